package sidecar

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/proxy"
)

// newGuard applies HTTP/1.x request hygiene to inbound connections: framing
// that could be read two ways, oversized or slow heads are refused before
// net/http parses anything, and each refusal is audited.
func (s *Sidecar) newGuard() *proxy.Guard {
	return &proxy.Guard{
		Limits: proxy.Limits{MaxHeaderBytes: s.lim.MaxHeaderBytes, MaxBodyBytes: s.lim.MaxBodyBytes, HeaderTimeout: s.lim.ReadHeaderTimeout},
		Logger: s.log,
		OnReject: func(c net.Conn, status int, reason string) {
			actor := ""
			if tc, ok := c.(*tls.Conn); ok {
				if p, err := peerOf(tc.ConnectionState()); err == nil {
					actor = p.id.String()
				}
			}
			s.metrics.observe(actor, s.cfg.Service, "deny", status, 0)
			s.emit(context.Background(), audit.Event{Type: "sidecar.request", Actor: actor, Subject: s.id.String(), Decision: "deny",
				Reason: reasonMalformed, Source: c.RemoteAddr().String(), Fields: map[string]string{"status": strconv.Itoa(status), "message": reason}})
		},
	}
}
