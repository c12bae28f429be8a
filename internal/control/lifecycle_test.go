package control_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/store"
)

// TestNoContextInStructs: issue 13, lifecycle. A context is passed to the
// methods that use it, never kept in a struct, where it would outlive the
// call it belongs to and hide who ends it.
func TestNoContextInStructs(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil || len(names) == 0 {
		t.Fatalf("no Go files: %v", err)
	}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		{
			ast.Inspect(f, func(n ast.Node) bool {
				st, ok := n.(*ast.StructType)
				if !ok {
					return true
				}
				for _, field := range st.Fields.List {
					if sel, ok := field.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Context" {
						if id, ok := sel.X.(*ast.Ident); ok && id.Name == "context" {
							t.Errorf("%s: a struct stores a context.Context", fset.Position(field.Pos()))
						}
					}
				}
				return true
			})
		}
	}
}

// listener is a store whose change notifications (store.Notifier) end
// only when the test lets them, after their context ended.
type listener struct {
	store.Store
	release  chan struct{}
	listened atomic.Bool
	returned atomic.Bool
}

func (l *listener) ResourcesVersion(context.Context) (int64, error) { return 1, nil }

func (l *listener) Listen(ctx context.Context, _ func(string), _ ...string) error {
	l.listened.Store(true)
	<-ctx.Done()
	<-l.release
	l.returned.Store(true)
	return ctx.Err()
}

// TestWatchResourcesWaitsForItsListener: issue 13, lifecycle. The
// notification listener WatchResources starts has ended by the time
// WatchResources returns: whoever starts a goroutine waits for it.
func TestWatchResourcesWaitsForItsListener(t *testing.T) {
	st := &listener{release: make(chan struct{})}
	h := &control.Handler{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.WatchResources(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !st.listened.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the listener never started")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	// The listener ends 50ms after its context: long enough that a
	// WatchResources that does not wait for it returns first.
	time.AfterFunc(50*time.Millisecond, func() { close(st.release) })
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("WatchResources: %v, want context.Canceled", err)
	}
	if !st.returned.Load() {
		t.Error("WatchResources returned while its notification listener was still running")
	}
}
