package pipeline

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkPipeline is the fixed cost of the path itself: an exchange
// from the pool, a request id, three empty stages, the record hook.
func BenchmarkPipeline(b *testing.B) {
	pass := func(*Exchange[struct{}]) Refusal { return Refusal{} }
	p := New(Config[struct{}]{
		Stages: []Stage[struct{}]{{"a", pass}, {"b", pass}, {"c", pass}},
		Record: func(*Exchange[struct{}]) {},
	})
	r := httptest.NewRequest("GET", "/", nil)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		p.ServeHTTP(w, r)
	}
}

// BenchmarkRender is the cost of answering a refusal.
func BenchmarkRender(b *testing.B) {
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		Render(w, NoRuleMatches, "0123456789abcdef01234567")
	}
}

func BenchmarkRequestID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewRequestID()
	}
}

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}
