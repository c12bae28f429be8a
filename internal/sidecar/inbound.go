package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/idtoken"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/waf"
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
	handler := s.newPipeline()
	h1 := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: s.lim.ReadHeaderTimeout,
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
	front := &pipeline.Front{
		Listener: s.inbound, TLS: tlsCfg, Guard: s.guard, Server: h1, HandshakeTimeout: handshakeTimeout,
		Refused: s.refusedHandshake,
		Serve: func(ctx context.Context, tc *tls.Conn, c net.Conn) net.Conn {
			p, err := peerOf(tc.ConnectionState())
			if err != nil { // VerifyConnection already checked; belt and braces
				tc.Close()
				return nil
			}
			if s.snap().services[s.cfg.Service].Protocol == "tcp" {
				s.serveL4Inbound(ctx, tc, p)
				return nil
			}
			if c != net.Conn(tc) {
				c = &meshConn{Conn: c, peer: p}
			}
			return c
		},
	}
	return front.Run(ctx)
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

// state is the sidecar's part of an exchange.
type state struct {
	peer     peer
	fwd      forwarded
	user     *idtoken.Claims // the user a gateway vouched for, verified
	token    string
	clientIP string
	dec      policy.Decision

	waf       waf.Finding // the WAF's finding, for the record
	bodyReady bool        // the WAF stage received the body already
}

type exchange = pipeline.Exchange[state]

// newPipeline returns the sidecar's inbound request path: hygiene, the
// caller's identity, policy, input inspection, the record (written before the app sees
// anything: what cannot be recorded is not forwarded), the body, the app.
func (s *Sidecar) newPipeline() *pipeline.Pipeline[state] {
	return pipeline.New(pipeline.Config[state]{
		Stages: []pipeline.Stage[state]{
			{Name: "hygiene", Run: s.hygiene},
			{Name: "ban", Run: s.ban},
			{Name: "identify", Run: s.identify},
			{Name: "authorize", Run: s.authorizeStage},
			{Name: "waf", Run: s.inspect},
			{Name: "record", Run: s.recordAllow},
			{Name: "body", Run: s.prepareBody},
			{Name: "forward", Run: s.forward},
		},
		Begin: func(x *exchange) {
			x.State.peer, _ = x.R.Context().Value(peerKey{}).(peer)
		},
		Record:       s.record,
		NoResponseID: true,
	})
}

// identify verifies the identity token a gateway sent, and takes the
// client address and request id it vouches for only with a valid one.
func (s *Sidecar) identify(x *exchange) pipeline.Refusal {
	st := &x.State
	user, token, dec := s.caller(st.fwd.token, st.peer)
	if dec.Reason != "" {
		st.dec = dec
		return pipeline.Refuse(pipeline.IdentityTokenInvalid, dec.Message)
	}
	st.user, st.token = user, token
	if user != nil {
		// The client address a gateway saw, kept for the app.
		if a, err := netip.ParseAddr(st.fwd.clientIP); err == nil {
			st.clientIP = a.String()
		}
		// A gateway's request id joins its access record to this one.
		if id := st.fwd.requestID; pipeline.ValidRequestID(id) {
			x.ID = id
		}
	}
	return pipeline.Refusal{}
}

// authorizeStage asks policy (see authorize).
func (s *Sidecar) authorizeStage(x *exchange) pipeline.Refusal {
	st := &x.State
	st.dec = s.authorize(x.R, st.peer, st.user)
	if !st.dec.Allow {
		return pipeline.Refuse(pipeline.Lookup(st.dec.Reason), st.dec.Message)
	}
	return pipeline.Refusal{}
}

// recordAllow writes the allow record before the app sees anything.
func (s *Sidecar) recordAllow(x *exchange) pipeline.Refusal {
	ev := s.event(x)
	if err := s.emit(x.R.Context(), ev); err != nil {
		// Fail closed: what cannot be recorded does not reach the app.
		return pipeline.Refuse(pipeline.AuditUnavailable, err.Error())
	}
	x.Recorded = true
	return pipeline.Refusal{}
}

// forward sets the verified identity for the app and sends the request.
func (s *Sidecar) forward(x *exchange) pipeline.Refusal {
	r, st := x.R, &x.State
	r.Header.Set(headerPeerID, st.peer.id.String())
	r.Header.Set(headerRequestID, x.ID)
	if user := st.user; user != nil {
		// The verified identity, for the app; the token itself lets the
		// app check it again.
		r.Header.Set(idtoken.Header, st.token)
		setIfNotEmpty(r.Header, headerUser, user.Subject)
		setIfNotEmpty(r.Header, headerUserIssuer, user.UserIssuer)
		setIfNotEmpty(r.Header, headerApp, user.App)
		setIfNotEmpty(r.Header, headerAnonymous, user.Anonymous)
		setIfNotEmpty(r.Header, headerScopes, strings.Join(user.Scopes, " "))
		setIfNotEmpty(r.Header, headerClientIP, st.clientIP)
	}
	s.app.ServeHTTP(&x.W, r)
	return pipeline.Refusal{}
}

// event is the request's record as of now.
func (s *Sidecar) event(x *exchange) audit.Event {
	st, r := &x.State, x.R
	actor := ""
	if !st.peer.id.IsZero() {
		actor = st.peer.id.String()
	}
	ev := audit.Event{Time: time.Now(), Type: "sidecar.request", Actor: actor, Subject: s.id.String(), Decision: "allow", Reason: st.dec.Reason,
		Source: r.RemoteAddr, Service: s.cfg.Service, RequestID: x.ID,
		HTTP: audit.HTTP{Method: r.Method, Path: r.URL.EscapedPath(), Policy: st.dec.Policy, Message: st.dec.Message,
			RequestID: x.ID, Proto: r.Proto, DryRun: st.dec.DryRun}}
	if st.user != nil {
		ev.User, ev.App = st.user.Subject, st.user.App
	}
	if st.waf.Verdict != "" {
		st.waf.Fill(&ev.HTTP)
		if !x.Refusal.Refused() {
			ev.HTTP.Message = st.waf.Detail
		}
	}
	if x.Refusal.Refused() {
		ev.Decision, ev.Reason = "deny", x.Refusal.Reason.Code
		ev.HTTP.Message, ev.HTTP.Status = x.Refusal.Detail, x.W.Status
	}
	return ev
}

// record writes the record of a refused request (an allowed one was
// written before forwarding) and the request's metrics.
func (s *Sidecar) record(x *exchange) {
	decision := "allow"
	if x.Refusal.Refused() {
		decision = "deny"
		_ = s.emit(context.WithoutCancel(x.R.Context()), s.event(x))
	}
	actor := ""
	if !x.State.peer.id.IsZero() {
		actor = x.State.peer.id.String()
	}
	elapsed := time.Since(x.Start)
	s.metrics.observe(actor, s.cfg.Service, decision, x.W.Status, elapsed)
	if s.cfg.Flows != nil {
		s.cfg.Flows.Observe(s.flowSample(x, elapsed))
	}
}

// flowSample is the request as an edge of the flows: from the caller's ID
// path ("svc/catalog"; the whole ID outside the trust domain, "-" without
// one) to this service, with the decision, dry runs that would have
// denied as flows.WouldDeny.
func (s *Sidecar) flowSample(x *exchange, elapsed time.Duration) flows.Sample {
	st := &x.State
	src := "-"
	if id := st.peer.id; !id.IsZero() {
		if id.TrustDomain() == s.cfg.TrustDomain {
			src = id.Path()[1:]
		} else {
			src = id.String()
		}
	}
	smp := flows.Sample{Source: src, Dest: s.cfg.Service, Method: x.R.Method, Path: x.R.URL.EscapedPath(), Decision: flows.Allow,
		Reason: st.dec.Reason, Policy: st.dec.Policy, Status: x.W.Status, Latency: elapsed}
	switch {
	case x.Refusal.Refused():
		smp.Decision, smp.Reason = flows.Deny, x.Refusal.Reason.Code
	case st.dec.DryRun && st.dec.Reason != policy.ReasonAllowed:
		smp.Decision = flows.WouldDeny
	}
	return smp
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
	return s.snap().engine.Decide(req)
}
