// Package controltest runs a real Ward server in-process for tests of the
// packages that talk to one.
package controltest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
)

// Start runs a server for trust domain example.org on loopback ports with
// a fresh data directory, after mod (if not nil) has adjusted its
// configuration. The server stops when the test ends.
func Start(t testing.TB, mod func(*control.ServerConfig)) *control.Server {
	t.Helper()
	srv, _ := StartStoppable(t, mod)
	return srv
}

// StartStoppable is Start, and also returns stop, which shuts the server
// down as its process would on SIGTERM and returns what Run returned. The
// test's end stops it if stop was not called.
func StartStoppable(t testing.TB, mod func(*control.ServerConfig)) (*control.Server, func() error) {
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
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
			srv.Close()
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("server run: %v", err)
		}
	})
	return srv, stop
}

// Enroll gives a workload identity id through srv's real API: a join token
// created with the server's bootstrap operator credential, then enrollment
// of a fresh key. The returned source is not running; a test that needs
// renewal or the revocation feed runs it.
func Enroll(t testing.TB, srv *control.Server, id spiffeid.ID) *identity.Source {
	t.Helper()
	bundle := srv.CA.Bundle()
	cred, err := control.LoadCredential(filepath.Join(srv.DataDir(), control.FileOperator))
	if err != nil {
		t.Fatal(err)
	}
	op, err := control.NewClient(srv.URL(), bundle, cred)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := op.CreateToken(context.Background(), id.String(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	client, err := control.NewClient(srv.URL(), bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewSource(identity.Config{TrustDomain: id.TrustDomain(), Authority: client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.SetBundle(bundle); err != nil {
		t.Fatal(err)
	}
	client.FollowBundle(src.Bundle)
	if err := src.Enroll(context.Background(), id, tok.Token); err != nil {
		t.Fatal(err)
	}
	return src
}
