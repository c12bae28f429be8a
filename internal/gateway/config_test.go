package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/authn/authntest"
)

// refreshLoops counts the JWT verifiers' key refresh loops running.
func refreshLoops() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "authn.(*Verifier).Run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func waitLoops(t *testing.T, want int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); refreshLoops() != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("key refresh loops = %d, want %d", refreshLoops(), want)
		}
	}
}

// TestApplyReplacesKeyRefreshLoop: each applied snapshot's verifier gets
// its own refresh loop while Run runs and the replaced one's stops; a
// refused or identical snapshot starts none; none outlive Run.
func TestApplyReplacesKeyRefreshLoop(t *testing.T) {
	idp := authntest.NewIDP(t)
	docs := func(audience string) []byte {
		return fmt.Appendf(nil, `apiVersion: ward/v1
kind: Issuer
metadata: {name: corp}
spec: {issuerURL: %q, audiences: [%s], algorithms: [ES256]}
`, idp.URL, audience)
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	w, err := newConfig(Config{Initial: &Snapshot{Version: 1, Data: docs("a")}, TrustDomain: td, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, "")
	if err != nil {
		t.Fatal(err)
	}
	before := refreshLoops()
	// Applied before Run: no loop yet (it has no lifetime to run in).
	if err := w.Apply(Snapshot{Version: 2, Data: docs("b")}); err != nil {
		t.Fatal(err)
	}
	waitLoops(t, before)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	waitLoops(t, before+1)
	for i, aud := range []string{"c", "d", "e"} {
		if err := w.Apply(Snapshot{Version: int64(3 + i), Data: docs(aud)}); err != nil {
			t.Fatal(err)
		}
		waitLoops(t, before+1)
	}
	if err := w.Apply(Snapshot{Version: 6, Data: docs("e")}); err != nil { // identical
		t.Fatal(err)
	}
	if err := w.Apply(Snapshot{Version: 7, Data: []byte("kind: Issuer\n")}); err == nil {
		t.Fatal("an invalid snapshot was applied")
	}
	waitLoops(t, before+1)
	if v := w.Load().Version; v != 6 {
		t.Errorf("version = %d, want 6", v)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitLoops(t, before)
}
