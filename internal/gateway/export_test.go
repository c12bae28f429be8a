package gateway

import "net/http"

// Stages returns the gateway's stage names and a handler running only the
// first n of them, for the per-stage benchmarks.
func Stages(g *Gateway) (names []string, prefix func(n int) http.Handler) {
	p := g.newPipeline()
	return p.StageNames(), func(n int) http.Handler { return p.Prefix(n) }
}
