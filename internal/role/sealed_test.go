package role

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/control"
)

// logBuffer collects log lines written from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sealedStatus is what the public listener's /v1/status and /healthz say
// ("" status when nothing answers).
func sealedStatus(t *testing.T, public string) (status map[string]any, health int) {
	t.Helper()
	resp, err := http.Get("http://" + public + "/v1/status")
	if err != nil {
		return nil, 0
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		t.Fatalf("/v1/status: %v", err)
	}
	h, err := http.Get("http://" + public + "/healthz")
	if err != nil {
		return status, 0
	}
	defer h.Body.Close()
	return status, h.StatusCode
}

// TestSealedServerUnsealsFromReader (issue 16 item 1): a server whose KEK
// comes on standard input starts sealed: its public listener says so and
// nothing else of it is open; a malformed key and a wrong key are refused
// and it stays sealed; the right key unseals it through the same NewServer
// and Run; no key line is logged; its context ends the Run with no
// goroutine left behind.
func TestSealedServerUnsealsFromReader(t *testing.T) {
	defer goleak.VerifyNone(t)
	right, wrong := make([]byte, 32), make([]byte, 32)
	right[0], wrong[0] = 7, 9
	rightKEK, err := ca.NewKEK(right)
	if err != nil {
		t.Fatal(err)
	}
	api, public := freeAddr(t), freeAddr(t)
	cfg := control.ServerConfig{DataDir: filepath.Join(t.TempDir(), "server"), TrustDomain: "roles.test",
		Listen: api, PublicListen: public, KEK: rightKEK, Log: quiet()}
	srv, err := control.NewServer(context.Background(), cfg) // initialise the data directory
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()

	var logs logBuffer
	cfg.KEK, cfg.Log = nil, slog.New(slog.NewTextHandler(&logs, nil))
	stdin, keys := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *control.Server, 1)
	done := make(chan error, 1)
	s := &Server{Config: cfg, KEK: stdin, Ready: func(srv *control.Server) { ready <- srv }}
	go func() { done <- s.Run(ctx) }()

	waitFor(t, "the sealed status", func() bool { st, _ := sealedStatus(t, public); return st != nil })
	if st, health := sealedStatus(t, public); st["sealed"] != true || health != http.StatusServiceUnavailable {
		t.Fatalf("sealed: /v1/status %v, /healthz %d", st, health)
	}
	if c, err := net.DialTimeout("tcp", api, time.Second); err == nil {
		c.Close()
		t.Fatal("the API listener is open while sealed")
	}
	if resp, err := http.Get("http://" + public + control.PathBundle); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("sealed server served the bundle: %d", resp.StatusCode)
		}
	}

	wrongLine := base64.StdEncoding.EncodeToString(wrong)
	for i, line := range []string{"garbage-line", wrongLine} {
		if _, err := io.WriteString(keys, line+"\n"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the refusal", func() bool { return strings.Count(logs.String(), "stays sealed") > i })
		waitFor(t, "the sealed status again", func() bool { st, _ := sealedStatus(t, public); return st["sealed"] == true })
	}
	if _, err := io.WriteString(keys, base64.StdEncoding.EncodeToString(right)+"\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("not unsealed\n%s", logs.String())
	}
	if st, health := sealedStatus(t, public); st["sealed"] != false || health != http.StatusOK {
		t.Fatalf("unsealed: /v1/status %v, /healthz %d", st, health)
	}
	if c, err := net.DialTimeout("tcp", api, time.Second); err != nil {
		t.Fatalf("the API listener is not open once unsealed: %v", err)
	} else {
		c.Close()
	}
	for _, secret := range []string{wrongLine, base64.StdEncoding.EncodeToString(right), "garbage-line"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a key line was logged:\n%s", logs.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	keys.Close()
}

// TestSealedServerEndsOnEOF (issue 16 item 1): standard input closing
// while the server is sealed ends its Run with a clear error.
func TestSealedServerEndsOnEOF(t *testing.T) {
	defer goleak.VerifyNone(t)
	stdin, keys := io.Pipe()
	s := &Server{Config: control.ServerConfig{DataDir: filepath.Join(t.TempDir(), "server"), TrustDomain: "roles.test",
		Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", Log: quiet()}, KEK: stdin}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	keys.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "standard input") || !strings.Contains(err.Error(), "sealed") {
			t.Fatalf("Run = %v, want an error about standard input ending while sealed", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not end on EOF")
	}
}

// TestSealedServerKeepsItsPublicPort (issue 16 item 1): given port 0, a
// sealed server answers once unsealed on the port it answered sealed.
func TestSealedServerKeepsItsPublicPort(t *testing.T) {
	defer goleak.VerifyNone(t)
	key := make([]byte, 32)
	var logs logBuffer
	stdin, keys := io.Pipe()
	defer keys.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *control.Server, 1)
	done := make(chan error, 1)
	s := &Server{Config: control.ServerConfig{DataDir: filepath.Join(t.TempDir(), "server"), TrustDomain: "roles.test",
		Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(&logs, nil))},
		KEK: stdin, Ready: func(srv *control.Server) { ready <- srv }}
	go func() { done <- s.Run(ctx) }()
	var sealedAt string
	waitFor(t, "the sealed log line", func() bool {
		_, after, ok := strings.Cut(logs.String(), "the server is sealed")
		if !ok {
			return false
		}
		_, after, ok = strings.Cut(after, " public=")
		sealedAt, _, _ = strings.Cut(after, "\n")
		return ok
	})
	if st, _ := sealedStatus(t, sealedAt); st["sealed"] != true {
		t.Fatalf("sealed at %s: %v", sealedAt, st)
	}
	if _, err := io.WriteString(keys, base64.StdEncoding.EncodeToString(key)+"\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case srv := <-ready:
		if srv.PublicAddr() != sealedAt {
			t.Fatalf("unsealed on %s, sealed on %s", srv.PublicAddr(), sealedAt)
		}
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not unsealed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestSealedServerStopsCleanly (issue 16 item 1): a sealed server whose
// context ends returns no error and leaves no goroutine behind.
func TestSealedServerStopsCleanly(t *testing.T) {
	defer goleak.VerifyNone(t)
	var logs logBuffer
	stdin, keys := io.Pipe()
	defer keys.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Config: control.ServerConfig{DataDir: filepath.Join(t.TempDir(), "server"), TrustDomain: "roles.test",
		Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(&logs, nil))}, KEK: stdin}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the sealed log line", func() bool { return strings.Contains(logs.String(), "the server is sealed") })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil on a stop while sealed", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not end with its context")
	}
}
