package mesh

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestCallerGoneIs499: when the caller's context ends before the service
// answers, the error handler records 499, not a 502 that blames the
// service.
func TestCallerGoneIs499(t *testing.T) {
	c := New(Config{Resolve: func(string) ([]string, bool) { return nil, false }, Log: slog.New(slog.DiscardHandler)})
	u := &Upstream{name: "orders"}
	p := c.proxy(u, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest("GET", "/x", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	p.ErrorHandler(w, req, context.Canceled)
	if w.Code != StatusClientClosed {
		t.Fatalf("caller gone: %d, want 499", w.Code)
	}
	w = httptest.NewRecorder()
	p.ErrorHandler(w, httptest.NewRequest("GET", "/x", nil), errors.New("connection refused"))
	if w.Code != http.StatusBadGateway {
		t.Fatalf("upstream down: %d, want 502", w.Code)
	}
	w = httptest.NewRecorder()
	p.ErrorHandler(w, httptest.NewRequest("GET", "/x", nil), ErrBreakerOpen)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("breaker open: %d, want 503", w.Code)
	}
}

// TestErrorTextHidesTheCause: issue 12 finding 11. Whoever sets a
// Service's endpoints must not learn, from what a client is told, whether a
// port is open or what answered there: clients get a generic text with a
// reason code; the operator's log keeps the cause.
func TestErrorTextHidesTheCause(t *testing.T) {
	var log bytes.Buffer
	c := New(Config{Resolve: func(string) ([]string, bool) { return nil, false }, Log: slog.New(slog.NewTextHandler(&log, nil))})
	p := c.proxy(&Upstream{name: "orders"}, nil)
	addr := &net.TCPAddr{IP: net.IPv4(10, 9, 8, 7), Port: 5432}
	causes := map[string]error{
		"port closed": &net.OpError{Op: "dial", Net: "tcp", Addr: addr, Err: syscall.ECONNREFUSED},
		"not TLS":     fmt.Errorf("mutual TLS with spiffe://example.org/svc/orders at 10.9.8.7:5432: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}),
		"timeout":     &net.OpError{Op: "dial", Net: "tcp", Addr: addr, Err: os.ErrDeadlineExceeded},
	}
	for name, cause := range causes {
		log.Reset()
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/x", nil)
		r.Header.Set("X-Ward-Request-Id", "0123456789abcdef01234567")
		p.ErrorHandler(w, r, cause)
		body := w.Body.String()
		if w.Code != http.StatusBadGateway || body != `{"error":"bad gateway","reason":"upstream_unreachable","request_id":"0123456789abcdef01234567"}`+"\n" {
			t.Errorf("%s: %d %q", name, w.Code, body)
		}
		if !strings.Contains(log.String(), "10.9.8.7:5432") {
			t.Errorf("%s: the operator's log lost the cause: %s", name, log.String())
		}
	}
	w := httptest.NewRecorder()
	p.ErrorHandler(w, httptest.NewRequest("GET", "/x", nil), ErrBreakerOpen)
	if w.Code != http.StatusServiceUnavailable || !strings.HasPrefix(w.Body.String(), `{"error":"service unavailable","reason":"circuit_open","request_id":"`) ||
		w.Header().Get("X-Ward-Deny-Reason") != "circuit_open" {
		t.Errorf("breaker open: %d %q", w.Code, w.Body.String())
	}
}
