package gateway

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
)

// newGuard applies HTTP/1.x request hygiene to client connections: framing
// that could be read two ways (CL+TE, duplicate Content-Length, bad
// chunking, NUL and control bytes, '_' in header names, obs-fold),
// oversized or slow heads are refused before net/http parses anything, and
// each refusal leaves an access record.
func (g *Gateway) newGuard() *proxy.Guard {
	return &proxy.Guard{
		Limits: proxy.Limits{MaxHeaderBytes: g.lim.MaxHeaderBytes, MaxBodyBytes: g.lim.MaxBodyBytes, HeaderTimeout: g.lim.ReadHeaderTimeout},
		Logger: g.log,
		Body:   pipeline.GuardBody,
		OnReject: func(c net.Conn, status int, reason string) {
			g.metrics.observe("", "deny", ReasonMalformed, status, 0)
			ev := audit.Event{Time: time.Now(), Type: "gateway.request", Subject: g.id.String(), Decision: "deny", Reason: ReasonMalformed,
				Source: c.RemoteAddr().String(), Result: strconv.Itoa(status), Fields: map[string]string{"status": strconv.Itoa(status), "message": reason}}
			if err := g.cfg.Events.Emit(context.Background(), ev); err != nil {
				g.log.Error("access record not written", "err", err)
			}
		},
	}
}
