package sidecar

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/proxy"
)

// serveL4Inbound authorizes the peer of a verified mTLS connection to a
// tcp service and splices the stream to the app.
func (s *Sidecar) serveL4Inbound(ctx context.Context, tc *tls.Conn, p peer) {
	defer tc.Close()
	dec := policy.Decision{Reason: "revoked", Message: "peer certificate is revoked"}
	if msg, banned := s.banConn(p, tc.RemoteAddr()); banned {
		dec = policy.Decision{Reason: pipeline.Banned.Code, Message: msg}
	} else if !s.cfg.Source.Revoked(p.serial) {
		// A connection is authorized as a whole: rules of a tcp service name
		// callers only, so it is asked as CONNECT to the root path.
		dec = s.snap().engine.Decide(policy.Request{Target: s.cfg.Service, Peer: p.id, Method: http.MethodConnect, Path: "/"})
	}
	ev := audit.Event{Type: "sidecar.connection", Actor: p.id.String(), Subject: s.id.String(), Decision: "allow", Reason: dec.Reason,
		Source: tc.RemoteAddr().String(), Fields: map[string]string{"policy": dec.Policy}}
	if !dec.Allow {
		ev.Decision = "deny"
		s.emit(ctx, ev)
		s.metrics.observe(p.id.String(), s.cfg.Service, "deny", 0, 0)
		return
	}
	if err := s.emit(ctx, ev); err != nil {
		// Fail closed, like HTTP: a connection that cannot be recorded
		// never reaches the app.
		s.metrics.observe(p.id.String(), s.cfg.Service, "deny", 0, 0)
		return
	}
	d := net.Dialer{Timeout: s.lim.ConnectTimeout}
	app, err := d.DialContext(ctx, "tcp", s.cfg.App)
	if err != nil {
		s.log.Warn("app unavailable for L4 connection", "err", err)
		return
	}
	start := time.Now()
	splice(ctx, tc, app)
	s.metrics.observe(p.id.String(), s.cfg.Service, "allow", 200, time.Since(start))
}

// serveL4Upstream accepts plaintext TCP from the app on loopback and
// carries each connection over mutual TLS to the named service.
func (s *Sidecar) serveL4Upstream(ctx context.Context, name string, l net.Listener) error {
	return proxy.AcceptLoop(ctx, l, func(c net.Conn) {
		defer c.Close()
		u, err := s.mesh.Upstream(name)
		if err != nil {
			s.log.Warn("L4 upstream", "service", name, "err", err)
			return
		}
		tc, err := u.DialStream(ctx, alpnL4)
		if err != nil {
			s.log.Warn("L4 upstream", "service", name, "err", err)
			return
		}
		splice(ctx, c, tc)
	})
}

// closeWriter is a connection that can half-close.
type closeWriter interface{ CloseWrite() error }

// splice copies both ways until both directions end or ctx is done,
// propagating half-closes.
func splice(ctx context.Context, a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		buf := proxy.Buffers.Get()
		_, _ = io.CopyBuffer(dst, src, buf)
		proxy.Buffers.Put(buf)
		if cw, ok := dst.(closeWriter); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	select {
	case <-done:
		select {
		case <-done:
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
	a.Close()
	b.Close()
}

// alpnL4 is the ALPN protocol of an opaque stream between sidecars.
const alpnL4 = "ward-l4"
