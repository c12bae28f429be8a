package sidecar

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/idtoken"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/proxy"
)

const handshakeTimeout = 10 * time.Second

// Headers Ward sets for the app. Every inbound header Ward owns, in any
// spelling (proxy.WardOwned), is removed first, so none can be forged.
const (
	headerPeerID     = "X-Ward-Peer-Id"
	headerRequestID  = "X-Ward-Request-Id"
	headerDenyReason = "X-Ward-Deny-Reason"
	headerUser       = "X-Ward-User"
	headerUserIssuer = "X-Ward-User-Issuer"
	headerApp        = "X-Ward-App"
	headerAnonymous  = "X-Ward-Anonymous-Id"
	headerScopes     = "X-Ward-Scopes"
	headerClientIP   = "X-Ward-Client-Ip"
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
	h1conns := proxy.NewConnQueue(s.inbound.Addr())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = proxy.Serve(ctx, h1, h1conns) }()
	defer wg.Wait()
	return proxy.AcceptLoop(ctx, s.inbound, func(c net.Conn) { s.handleInbound(ctx, c, tlsCfg, h1conns) })
}

func (s *Sidecar) handleInbound(ctx context.Context, raw net.Conn, cfg *tls.Config, conns *proxy.ConnQueue) {
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
	if !conns.Push(ctx, c) {
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

func (s *Sidecar) emit(ctx context.Context, e audit.Event) error {
	e.Time = time.Now()
	err := s.cfg.Events.Emit(ctx, e)
	if err != nil {
		s.log.Error("audit event not recorded", "type", e.Type, "err", err)
	}
	return err
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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
		if err := s.guard.Check(r); err != nil {
			s.refuseMalformed(w, r, p, err)
			return
		}
		// What a gateway vouches for is read once; then every header posing
		// as Ward's, in any spelling, goes before policy reads the headers.
		fwd := forwarded{token: r.Header.Get(idtoken.Header), clientIP: r.Header.Get(headerClientIP), requestID: r.Header.Get(headerRequestID)}
		proxy.StripWard(r.Header)
		r.Header.Del("Proxy") // httpoxy: never let a caller set the app's proxy
		user, token, dec := s.caller(fwd.token, p)
		if dec.Reason == "" {
			dec = s.authorize(r, p, user)
		}
		ev := audit.Event{Type: "sidecar.request", Actor: p.id.String(), Subject: s.id.String(), Decision: "allow", Reason: dec.Reason,
			Source: r.RemoteAddr, Service: s.cfg.Service, RequestID: reqID,
			Fields: map[string]string{"method": r.Method, "path": r.URL.EscapedPath(), "policy": dec.Policy, "message": dec.Message, "request_id": reqID}}
		var clientIP string
		if user != nil {
			ev.User, ev.App = user.Subject, user.App
			// The client address a gateway saw, kept for the app.
			if a, err := netip.ParseAddr(fwd.clientIP); err == nil {
				clientIP = a.String()
			}
			// A gateway's request id joins its access record to this one.
			if id := fwd.requestID; validRequestID(id) {
				ev.RequestID, reqID = id, id
				ev.Fields["request_id"] = id
			}
		}
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
		if err := s.emit(r.Context(), ev); err != nil {
			// Fail closed: what cannot be recorded does not reach the app.
			w.Header().Set(headerDenyReason, "audit_unavailable")
			http.Error(w, "ward: audit log unavailable", http.StatusServiceUnavailable)
			return
		}
		r.Header.Set(headerPeerID, p.id.String())
		r.Header.Set(headerRequestID, reqID)
		if user != nil {
			// The verified identity, for the app; the token itself lets the
			// app check it again.
			r.Header.Set(idtoken.Header, token)
			setIfNotEmpty(r.Header, headerUser, user.Subject)
			setIfNotEmpty(r.Header, headerUserIssuer, user.UserIssuer)
			setIfNotEmpty(r.Header, headerApp, user.App)
			setIfNotEmpty(r.Header, headerAnonymous, user.Anonymous)
			setIfNotEmpty(r.Header, headerScopes, strings.Join(user.Scopes, " "))
			setIfNotEmpty(r.Header, headerClientIP, clientIP)
		}
		done, ok := s.prepareBody(w, r, &ev)
		defer done()
		if !ok {
			return
		}
		s.app.ServeHTTP(w, r)
	})
}

// validRequestID accepts what Ward's gateway generates: 1 to 64 letters,
// digits and '-'.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func setIfNotEmpty(h http.Header, k, v string) {
	if v != "" {
		h.Set(k, v)
	}
}

// caller verifies the identity token a gateway sent with the request, if
// any. A token that does not verify denies the request: policy may depend
// on the user it names, so it is never silently dropped.
func (s *Sidecar) caller(tok string, p peer) (*idtoken.Claims, string, policy.Decision) {
	if tok == "" || p.id.IsZero() {
		return nil, "", policy.Decision{}
	}
	c, err := s.idtokens.Verify(tok, p.id, time.Now())
	if err != nil {
		return nil, "", policy.Decision{Reason: "identity_token_invalid", Message: err.Error()}
	}
	return c, tok, policy.Decision{}
}

// authorize checks the connection's peer is still unrevoked, normalizes
// the path and asks the policy engine.
func (s *Sidecar) authorize(r *http.Request, p peer, user *idtoken.Claims) policy.Decision {
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
	proxy.SetPath(r.URL, path)
	req := policy.Request{Target: s.cfg.Service, Peer: p.id, Method: r.Method, Path: path, Header: r.Header}
	if user != nil {
		req.Claims = user.User()
	}
	return s.conf.Load().engine.Decide(req)
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
	case "identity_token_invalid":
		return http.StatusUnauthorized
	default:
		return http.StatusForbidden
	}
}
