// Package controltest runs a real Ward server in-process for tests of the
// packages that talk to one.
package controltest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/wardsec/ward/internal/control"
)

// Start runs a server for trust domain example.org on loopback ports with
// a fresh data directory, after mod (if not nil) has adjusted its
// configuration. The server stops when the test ends.
func Start(t *testing.T, mod func(*control.ServerConfig)) *control.Server {
	t.Helper()
	cfg := control.ServerConfig{
		DataDir: filepath.Join(t.TempDir(), "data"), TrustDomain: "example.org",
		Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := control.NewServer(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server run: %v", err)
		}
		srv.Close()
	})
	return srv
}
