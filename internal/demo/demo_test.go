package demo

import (
	"bytes"
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// syncBuffer is the demo's Out, read while the demo writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTourAndShutdown runs the demo in process (the gateway on a free
// port), checks that each step observed what its title claims, then
// cancels it as Ctrl-C does: Run returns nil promptly, the temporary
// directory is gone and no goroutine is left.
func TestTourAndShutdown(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	d := &Demo{Out: out, GatewayAddr: "127.0.0.1:0"}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- d.Run(ctx) }()
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		select {
		case err := <-done:
			t.Fatalf("demo stopped before the end of the tour: %v\n%s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no tour after 30s:\n%s", out)
		}
	}
	text := out.String()
	for _, want := range []*regexp.Regexp{
		// 1: alice reads the order and the catalog; the apps see her.
		regexp.MustCompile(`orders/1\n  \{"id":"1".*"caller":\{"user":"alice","app":"shop","peer":"spiffe://demo.ward.local/gateway/edge"\}\}\n  HTTP 200\n`),
		regexp.MustCompile(`catalog/items\n  \{"items":.*"user":"alice".*\n  HTTP 200\n`),
		// 2: bob is refused by the orders policy, a caller without a key by the gateway.
		regexp.MustCompile(`bob.jwt"\)" https://localhost:\d+/orders/1\n  \{"error":"forbidden","reason":"no_rule_matches".*\n  HTTP 403\n`),
		regexp.MustCompile(`alice.jwt"\)" https://localhost:\d+/orders/1\n  \{"error":"unauthorized","reason":"apikey_missing".*\n  HTTP 401\n`),
		// 3: a fresh limit of 3 lets three through, then 429 with Retry-After.
		regexp.MustCompile(`done\n  HTTP/2 200\n  HTTP/2 200\n  HTTP/2 200\n  HTTP/2 429\n  retry-after: \d+\n  HTTP/2 429\n  retry-after: \d+\n`),
		// 4: orders' sidecar refuses catalog.
		regexp.MustCompile(`http://orders/orders/1\n  \{"error":"forbidden","reason":"no_rule_matches","request_id":"\w+"\}\n  HTTP 403\n`),
	} {
		if !want.MatchString(text) {
			t.Errorf("tour lacks %s:\n%s", want, text)
		}
	}
	dir := strings.TrimPrefix(regexp.MustCompile(`(?m)^\$ D=(.*)$`).FindString(text), "$ D=")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("demo directory %q: %v", dir, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo directory %s left behind: %v", dir, err)
	}
}

// TestPortTaken: a busy gateway port stops the demo at once with a
// message that says what to do, before anything starts.
func TestPortTaken(t *testing.T) {
	defer goleak.VerifyNone(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out bytes.Buffer
	err = (&Demo{Out: &out, GatewayAddr: l.Addr().String(), Exit: true}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "another program uses") {
		t.Fatalf("got %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed a tour anyway:\n%s", out.String())
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/ward-demo-123": "/tmp/ward-demo-123",
		"/home/me/my demo":   "'/home/me/my demo'",
		"/it's":              `'/it'\''s'`,
		"":                   "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
