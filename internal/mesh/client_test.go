package mesh

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"log/slog"
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
