package sidecar

import (
	"context"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Stages returns the sidecar's stage names and a handler running only the
// first n of them, for the per-stage benchmarks.
func Stages(s *Sidecar) (names []string, prefix func(n int) http.Handler) {
	p := s.newPipeline()
	return p.StageNames(), func(n int) http.Handler { return p.Prefix(n) }
}

// WithPeer returns r as if it came over a mutual TLS connection from id.
func WithPeer(r *http.Request, id spiffeid.ID) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), peerKey{}, peer{id: id, serial: "1"}))
}
