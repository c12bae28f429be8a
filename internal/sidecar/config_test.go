package sidecar

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
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
	_, err := newConfigWatcher(path, nil, td, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), path+":4") {
		t.Fatalf("err = %v, want %s:4", err, path)
	}
	write("apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [\"127.0.0.1:1\"]}\n")
	w, err := newConfigWatcher(path, nil, td, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	good := w.Load()
	write("apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: nowhere\n  rules: [{from: [svc/a]}]\n")
	if _, err := w.read(); err == nil || !strings.Contains(err.Error(), path+":") {
		t.Fatalf("reload err = %v", err)
	}
	if w.Load() != good {
		t.Fatal("a failed reload replaced the snapshot")
	}
}
