package sidecar

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/proxy"
)

const (
	handshakeTimeout = 10 * time.Second
	shutdownGrace    = 5 * time.Second
)

// Headers Ward sets for the app. Every inbound header starting with
// wardPrefix is removed first, so none can be forged from outside.
const (
	wardPrefix       = "X-Ward-"
	headerPeerID     = "X-Ward-Peer-Id"
	headerRequestID  = "X-Ward-Request-Id"
	headerDenyReason = "X-Ward-Deny-Reason"
)

// peer is the verified caller of one mesh connection.
type peer struct {
	id     spiffeid.ID
	serial string // leaf serial, lowercase hex
}

type peerKey struct{}

// meshConn is an accepted, verified mTLS connection carrying its peer.
type meshConn struct {
	net.Conn
	peer peer
}

func (s *Sidecar) inboundTLS() *tls.Config {
	// Any SVID of the trust domain may connect; policy decides per request.
	cfg := s.cfg.Source.ServerTLSConfig(identity.AuthorizeMemberOf(s.cfg.TrustDomain))
	cfg.NextProtos = []string{"h2", "http/1.1", alpnL4}
	return cfg
}

// serveInbound accepts mTLS connections: HTTP/2 is served per connection,
// HTTP/1.x goes through the request-framing guard to one http.Server, and a
// tcp service gets its bytes spliced to the app.
func (s *Sidecar) serveInbound(ctx context.Context) error {
	tlsCfg := s.inboundTLS()
	handler := s.inboundHandler()
	h1 := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    s.lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// HTTP/2 conns arrive as the *tls.Conn (net/http serves h2 on it),
		// HTTP/1 conns as a guarded meshConn; both carry the verified peer.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			switch c := c.(type) {
			case *meshConn:
				return proxy.ConnContext(context.WithValue(ctx, peerKey{}, c.peer), c.Conn)
			case *tls.Conn:
				if p, err := peerOf(c.ConnectionState()); err == nil {
					return context.WithValue(ctx, peerKey{}, p)
				}
			}
			return ctx
		},
	}
	h1conns := newChanListener(s.inbound.Addr())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = serveUntil(ctx, h1, h1conns) }()
	defer wg.Wait()

	// live tracks connections so that those still open after the grace
	// period are closed rather than waited for.
	var live sync.Map
	var conns sync.WaitGroup
	defer func() {
		done := make(chan struct{})
		go func() { conns.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(shutdownGrace):
			live.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
			<-done
		}
	}()
	go func() { <-ctx.Done(); s.inbound.Close() }()
	for {
		c, err := s.inbound.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return err
		}
		conns.Add(1)
		live.Store(c, struct{}{})
		go func() {
			defer conns.Done()
			defer live.Delete(c)
			s.handleInbound(ctx, c, tlsCfg, h1conns)
		}()
	}
}

func (s *Sidecar) handleInbound(ctx context.Context, raw net.Conn, cfg *tls.Config, conns *chanListener) {
	tc := tls.Server(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		s.refusedHandshake(raw, err)
		tc.Close()
		return
	}
	st := tc.ConnectionState()
	p, err := peerOf(st)
	if err != nil { // VerifyConnection already checked; belt and braces
		tc.Close()
		return
	}
	if s.conf.Load().services[s.cfg.Service].Protocol == "tcp" {
		s.serveL4Inbound(ctx, tc, p)
		return
	}
	var c net.Conn = tc
	if st.NegotiatedProtocol != "h2" {
		c = &meshConn{Conn: s.guard.Conn(tc), peer: p}
	}
	if !conns.push(ctx, c) {
		c.Close()
	}
}

// peerOf returns the verified peer of a completed mTLS handshake.
func peerOf(st tls.ConnectionState) (peer, error) {
	if len(st.PeerCertificates) == 0 {
		return peer{}, errors.New("no peer certificate")
	}
	leaf := st.PeerCertificates[0]
	id, err := identity.SVIDID(leaf)
	if err != nil {
		return peer{}, err
	}
	return peer{id: id, serial: leaf.SerialNumber.Text(16)}, nil
}

// refusedHandshake records a peer that failed mutual TLS.
func (s *Sidecar) refusedHandshake(c net.Conn, err error) {
	reason := "tls_handshake"
	var pe *identity.PeerError
	if errors.As(err, &pe) {
		reason = pe.Reason
	}
	s.metrics.refused.WithLabelValues(reason).Inc()
	s.emit(context.Background(), audit.Event{Type: "sidecar.handshake", Subject: s.id.String(), Decision: "deny", Reason: reason,
		Actor: peerString(pe), Source: c.RemoteAddr().String(), Fields: map[string]string{"error": err.Error()}})
}

func peerString(pe *identity.PeerError) string {
	if pe == nil || pe.ID.IsZero() {
		return ""
	}
	return pe.ID.String()
}

func (s *Sidecar) emit(ctx context.Context, e audit.Event) {
	e.Time = time.Now()
	if err := s.cfg.Events.Emit(ctx, e); err != nil {
		s.log.Error("audit event not recorded", "type", e.Type, "err", err)
	}
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// stripWard removes every header Ward owns from what arrived.
func stripWard(h http.Header) {
	for k := range h {
		if len(k) >= len(wardPrefix) && strings.EqualFold(k[:len(wardPrefix)], wardPrefix) {
			delete(h, k)
		}
	}
}

// statusWriter records the status and bytes of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Sidecar) inboundHandler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &statusWriter{ResponseWriter: rw}
		p, _ := r.Context().Value(peerKey{}).(peer)
		reqID := newRequestID()
		dec := s.authorize(r, p)
		ev := audit.Event{Type: "sidecar.request", Actor: p.id.String(), Subject: s.id.String(), Decision: "allow", Reason: dec.Reason,
			Source: r.RemoteAddr, Fields: map[string]string{"method": r.Method, "path": r.URL.EscapedPath(), "policy": dec.Policy, "message": dec.Message, "request_id": reqID}}
		if dec.DryRun {
			ev.Fields["dry_run"] = "true"
		}
		defer func() {
			s.metrics.observe(p.id.String(), s.cfg.Service, ev.Decision, w.status, time.Since(start))
		}()
		if !dec.Allow {
			ev.Decision = "deny"
			s.emit(r.Context(), ev)
			w.Header().Set(headerDenyReason, dec.Reason)
			http.Error(w, denyBody(dec), denyStatus(dec.Reason))
			return
		}
		s.emit(r.Context(), ev)
		stripWard(r.Header)
		r.Header.Del("Proxy") // httpoxy: never let a caller set the app's proxy
		r.Header.Set(headerPeerID, p.id.String())
		r.Header.Set(headerRequestID, reqID)
		if err := s.bufferChunked(w, r); err != nil {
			return
		}
		s.app.ServeHTTP(w, r)
	})
}

// authorize checks the connection's peer is still unrevoked, normalizes
// the path and asks the policy engine.
func (s *Sidecar) authorize(r *http.Request, p peer) policy.Decision {
	if p.id.IsZero() {
		return policy.Decision{Reason: "no_identity", Message: "no verified caller identity"}
	}
	if s.cfg.Source.Revoked(p.serial) {
		return policy.Decision{Reason: "revoked", Message: fmt.Sprintf("certificate of %s is revoked", p.id)}
	}
	path, err := policy.NormalizePath(r.URL.EscapedPath())
	if err != nil {
		return policy.Decision{Reason: "ambiguous_path", Message: err.Error()}
	}
	// The app sees exactly the path that was authorized.
	r.URL.Path, r.URL.RawPath = path, ""
	return s.conf.Load().engine.Decide(policy.Request{Target: s.cfg.Service, Peer: p.id, Method: r.Method, Path: path})
}

// denyBody is what the caller is told: the policy and the reason code.
// The full message (which may quote a condition's error) goes to the audit
// record only.
func denyBody(d policy.Decision) string {
	if d.Policy == "" {
		return "ward: denied: " + d.Reason
	}
	return "ward: denied by " + d.Policy + ": " + d.Reason
}

func denyStatus(reason string) int {
	switch reason {
	case "ambiguous_path":
		return http.StatusBadRequest
	default:
		return http.StatusForbidden
	}
}

// bufferChunked reads a chunked HTTP/1.1 body whole (bounded) before
// anything is sent to the app, so that bad chunking found late never
// leaves a partial request at the app.
func (s *Sidecar) bufferChunked(w http.ResponseWriter, r *http.Request) error {
	if r.ProtoMajor != 1 || len(r.TransferEncoding) == 0 {
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.lim.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "malformed request body", http.StatusBadRequest)
		}
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	return nil
}

// chanListener hands connections accepted elsewhere to an http.Server.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(ctx context.Context, c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	case <-ctx.Done():
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }
