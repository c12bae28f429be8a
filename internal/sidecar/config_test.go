package sidecar

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
)

// TestConfigErrorsNameFileAndLine: a bad resource file is refused with
// file:line, at start and on reload (where the running snapshot stays).
func TestConfigErrorsNameFileAndLine(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [\"127.0.0.1:1\"], colour: red}\n")
	_, err := newConfig(Config{ConfigFile: path, TrustDomain: td, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, "")
	if err == nil || !strings.Contains(err.Error(), path+":4") {
		t.Fatalf("err = %v, want %s:4", err, path)
	}
	write("apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [\"127.0.0.1:1\"]}\n")
	events := &audit.Recorder{}
	w, err := newConfig(Config{ConfigFile: path, TrustDomain: td, Events: events, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, "spiffe://example.org/svc/orders")
	if err != nil {
		t.Fatal(err)
	}
	good := w.Load()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	write("apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: nowhere\n  rules: [{from: [svc/a]}]\n")
	var refused audit.Event
	for deadline := time.Now().Add(10 * time.Second); refused.Type == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no config.reload refusal recorded for the bad file")
		}
		for _, e := range events.Events() {
			if e.Type == "config.reload" && e.Decision == "deny" {
				refused = e
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(refused.Fields["error"], path+":") {
		t.Fatalf("reload refusal %v does not name the file and line", refused.Fields)
	}
	if w.Load() != good {
		t.Fatal("a failed reload replaced the snapshot")
	}
}
