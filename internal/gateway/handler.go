package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/idtoken"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/ratelimit"
	"github.com/wardsec/ward/internal/resource"
)

// Headers.
const (
	// HeaderAPIKey carries the application's API key.
	HeaderAPIKey = "X-Api-Key"
	// HeaderRequestID is set on every response and sent upstream; it joins
	// the gateway's access record to the sidecar's.
	HeaderRequestID = "X-Ward-Request-Id"
	// HeaderClientIP carries the client's address to the service.
	HeaderClientIP   = "X-Ward-Client-Ip"
	headerDenyReason = "X-Ward-Deny-Reason"
)

// Reason codes of the gateway's own decisions (authentication failures use
// authn's codes, policy decisions policy's).
const (
	ReasonAllowed           = "allowed"
	ReasonNoRoute           = "no_route"
	ReasonAmbiguousPath     = "ambiguous_path"
	ReasonAPIKeyMissing     = "apikey_missing"
	ReasonJWTMissing        = "jwt_missing"
	ReasonCertMissing       = "client_cert_missing"
	ReasonConditionFailed   = "route_condition_failed"
	ReasonRateLimited       = "rate_limited"
	ReasonLimiterDown       = "ratelimit_unavailable"
	ReasonBodyTooLarge      = proxy.ReasonBodyTooLarge
	ReasonBadBody           = proxy.ReasonBodyMalformed
	ReasonIssuersNotDefined = "no_issuers"
	ReasonTokenUnavailable  = "identity_token_unavailable"
	ReasonAuditUnavailable  = "audit_unavailable"
)

// outcome is what the pipeline decided, for the client and the record.
type outcome struct {
	status int
	reason string
	msg    string // for the operator's record; never sent to the client
}

// exchange is one request passing through the gateway.
type exchange struct {
	id     string
	start  time.Time
	route  *route
	p      authn.Principal
	w      *recordingWriter
	r      *http.Request
	path   string
	source string
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (g *Gateway) handler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		x := &exchange{id: newRequestID(), start: time.Now(), r: r, w: &recordingWriter{ResponseWriter: rw}}
		x.source, _, _ = net.SplitHostPort(r.RemoteAddr)
		x.p.Source = x.source
		x.p.AnonymousID = authn.AnonymousID(g.anon, x.source, r.UserAgent())
		rw.Header().Set(HeaderRequestID, x.id)
		out := g.serve(x)
		if out.status != 0 {
			g.refuse(x, out)
		}
		g.record(x, out)
	})
}

// serve runs the pipeline. A zero outcome means the request was forwarded
// (the status is the upstream's, in x.w).
func (g *Gateway) serve(x *exchange) outcome {
	r := x.r
	snap := g.conf.Load()
	if out := g.hygiene(r); out.status != 0 {
		return out
	}
	release, out := g.admit(x)
	if out.status != 0 {
		return out
	}
	defer release()

	path, err := policy.NormalizePath(r.URL.EscapedPath())
	if err != nil {
		return outcome{http.StatusBadRequest, ReasonAmbiguousPath, err.Error()}
	}
	x.path = path
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	x.route = snap.match(host, path)
	if x.route == nil {
		return outcome{http.StatusNotFound, ReasonNoRoute, fmt.Sprintf("no route for host %q path %s", host, path)}
	}
	if out := g.authenticate(x, snap); out.status != 0 {
		return out
	}
	if out := g.authorize(x, snap); out.status != 0 {
		return out
	}
	if out := g.rateLimit(x); out.status != 0 {
		return out
	}
	return g.forward(x)
}

// authenticate builds the Principal the route asks for.
func (g *Gateway) authenticate(x *exchange, snap *snapshot) outcome {
	r, spec := x.r, &x.route.spec
	key := r.Header.Get(HeaderAPIKey)
	switch {
	case key == "" && spec.Auth.APIKey == resource.APIKeyRequired:
		return outcome{http.StatusUnauthorized, ReasonAPIKeyMissing, "no " + HeaderAPIKey + " header"}
	case key != "" && spec.Auth.APIKey != resource.APIKeyNone:
		app, err := g.keys.Authenticate(r.Context(), key, x.route.name, time.Now())
		if err != nil {
			return authFailure(err)
		}
		x.p.AppID, x.p.KeyPrefix, x.p.KeyScopes = app.AppID, app.KeyPrefix, app.KeyScopes
	}
	switch spec.Auth.User {
	case resource.UserJWT:
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			return outcome{http.StatusUnauthorized, ReasonJWTMissing, "no bearer token in Authorization"}
		}
		if snap.jwt == nil {
			return outcome{http.StatusServiceUnavailable, ReasonIssuersNotDefined, "route needs a JWT but no Issuer is defined"}
		}
		user, err := g.jwtCache.verify(r.Context(), snap.jwt, tok, spec.Auth.Issuers)
		if err != nil {
			return authFailure(err)
		}
		x.p.User, x.p.Issuer, x.p.Claims, x.p.Scopes = user.User, user.Issuer, user.Claims, user.Scopes
	case resource.UserMTLS:
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			return outcome{http.StatusUnauthorized, ReasonCertMissing, "no verified client certificate"}
		}
		leaf := r.TLS.VerifiedChains[0][0]
		x.p.User, x.p.Issuer = certUser(leaf.Subject.CommonName, leaf.EmailAddresses), "mtls"
		x.p.Claims = map[string]any{"sub": x.p.User}
	}
	return outcome{}
}

func certUser(cn string, emails []string) string {
	if len(emails) > 0 {
		return emails[0]
	}
	return cn
}

// authFailure turns an authentication error into a 401, or a 503 when the
// credential could not be checked at all.
func authFailure(err error) outcome {
	reason := authn.ReasonOf(err)
	status := http.StatusUnauthorized
	switch reason {
	case authn.ReasonAPIKeyUnavailable, authn.ReasonJWTKeysUnavailable:
		status = http.StatusServiceUnavailable
	case authn.ReasonAPIKeyOutOfScope:
		status = http.StatusForbidden
	}
	return outcome{status, reason, err.Error()}
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// user is the "user" variable of conditions: the token's claims plus
// scopes, app and anonymous, the same names the sidecar gives them.
func userVars(p *authn.Principal) map[string]any {
	m := make(map[string]any, len(p.Claims)+4)
	for k, v := range p.Claims {
		m[k] = v
	}
	scopes := make([]any, len(p.Scopes))
	for i, s := range p.Scopes {
		scopes[i] = s
	}
	m["scopes"], m["app"], m["anonymous"] = scopes, p.AppID, p.AnonymousID
	if p.User != "" {
		m["sub"], m["iss"] = p.User, p.Issuer
	}
	return m
}

// authorize checks the route's condition and, with the gateway as the
// caller, the AccessPolicies of the target service: the same decision the
// service's sidecar will make, taken at the edge so a denial costs nothing
// downstream and has its reason.
func (g *Gateway) authorize(x *exchange, snap *snapshot) outcome {
	req := policy.Request{Target: x.route.service, Peer: g.id, Method: x.r.Method, Path: x.path, Header: x.r.Header, Claims: userVars(&x.p)}
	ok, err := snap.engine.RouteCondition(x.route.name, req)
	if err != nil {
		return outcome{http.StatusForbidden, ReasonConditionFailed, "route condition: " + err.Error()}
	}
	if !ok {
		return outcome{http.StatusForbidden, ReasonConditionFailed, "route condition does not hold"}
	}
	dec := snap.engine.Decide(req)
	if !dec.Allow {
		status := http.StatusForbidden
		if dec.Reason == policy.ReasonAmbiguousPath {
			status = http.StatusBadRequest
		}
		return outcome{status, dec.Reason, dec.Message}
	}
	return outcome{}
}

// rateLimit applies the route's limit to the caller's key.
func (g *Gateway) rateLimit(x *exchange) outcome {
	rt := x.route
	if rt.limit.Rate.Count == 0 {
		return outcome{}
	}
	key := "route:" + rt.name
	for _, kind := range rt.keys {
		key += "|" + x.p.LimitKey(kind)
	}
	res, err := g.limiter.Allow(x.r.Context(), key, rt.limit)
	if err != nil {
		// Fail closed: a limit that cannot be counted is not enforced, and
		// the point of a limit is that it is.
		return outcome{http.StatusServiceUnavailable, ReasonLimiterDown, err.Error()}
	}
	ratelimit.Headers(x.w.Header(), rt.limit, res)
	if !res.Allowed {
		return outcome{http.StatusTooManyRequests, ReasonRateLimited, "limit " + rt.limit.Rate.String() + " for " + key}
	}
	return outcome{}
}

// forward sends the request into the mesh.
func (g *Gateway) forward(x *exchange) outcome {
	r, rt := x.r, x.route
	if err := audit.Ready(g.cfg.Events); err != nil {
		// Fail closed: a request that cannot be recorded is not forwarded.
		return outcome{http.StatusServiceUnavailable, ReasonAuditUnavailable, err.Error()}
	}
	up, err := g.mesh.Upstream(rt.service)
	if err != nil {
		return outcome{http.StatusBadGateway, "unknown_service", err.Error()}
	}
	done, out := g.prepareBody(x)
	if out.status != 0 {
		return out
	}
	defer done()
	tok, err := g.tokens.get(g.cfg.Source.Current(), &x.p, up.ID().String(), g.cfg.TokenTTL)
	if err != nil {
		return outcome{http.StatusServiceUnavailable, ReasonTokenUnavailable, err.Error()}
	}
	if !rt.spec.ForwardCredentials {
		r.Header.Del("Authorization")
		r.Header.Del(HeaderAPIKey)
	}
	r.Header.Set(idtoken.Header, tok)
	r.Header.Set(HeaderRequestID, x.id)
	r.Header.Set(HeaderClientIP, x.source) // what the gateway saw, never the client's claim
	proxy.SetPath(r.URL, x.path)           // the service sees the path that was authorized
	up.ServeHTTP(x.w, r)
	return outcome{}
}

// refuse answers a request the gateway did not forward: the status, the
// reason code (never the detail, which may quote credentials' metadata)
// and the request id, as JSON.
func (g *Gateway) refuse(x *exchange, out outcome) {
	h := x.w.Header()
	h.Set(headerDenyReason, out.reason)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch out.reason {
	case ReasonJWTMissing:
		h.Set("WWW-Authenticate", `Bearer realm="ward"`)
	case authn.ReasonJWTExpired, authn.ReasonJWTBadSignature, authn.ReasonJWTWrongAudience, authn.ReasonJWTWrongIssuer,
		authn.ReasonJWTMalformed, authn.ReasonJWTAlgNotAllowed, authn.ReasonJWTUnknownKey, authn.ReasonJWTNotYetValid:
		h.Set("WWW-Authenticate", `Bearer realm="ward", error="invalid_token"`)
	}
	if out.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	body, _ := json.Marshal(struct {
		Error     string `json:"error"`
		Reason    string `json:"reason"`
		RequestID string `json:"request_id"`
	}{strings.ToLower(http.StatusText(out.status)), out.reason, x.id})
	x.w.WriteHeader(out.status)
	_, _ = x.w.Write(append(body, '\n'))
}

// record emits the access record of the exchange.
func (g *Gateway) record(x *exchange, out outcome) {
	status := x.w.status
	if status == 0 {
		status = http.StatusOK
	}
	decision, reason := "allow", ReasonAllowed
	if out.status != 0 {
		decision, reason = "deny", out.reason
	}
	routeName, service := "", ""
	if x.route != nil {
		routeName, service = x.route.name, x.route.service
	}
	elapsed := time.Since(x.start)
	ev := audit.Event{
		Time: time.Now(), Type: "gateway.request", Actor: x.p.Key(authn.KeyKindUser), Subject: g.id.String(),
		Decision: decision, Reason: reason, Source: x.r.RemoteAddr, Service: service, User: x.p.User, App: x.p.AppID,
		RequestID: x.id, TraceID: traceID(x.r.Header.Get("Traceparent")), Result: strconv.Itoa(status),
		Fields: map[string]string{
			"route": routeName, "method": x.r.Method, "host": x.r.Host, "path": x.r.URL.EscapedPath(),
			"status": strconv.Itoa(status), "bytes_out": strconv.FormatInt(x.w.bytes, 10),
			"bytes_in": strconv.FormatInt(max(x.r.ContentLength, 0), 10), "latency_us": strconv.FormatInt(elapsed.Microseconds(), 10),
			"anonymous_id": x.p.AnonymousID, "key_prefix": x.p.KeyPrefix, "user_issuer": x.p.Issuer, "proto": x.r.Proto,
		},
	}
	if out.msg != "" {
		ev.Fields["message"] = out.msg
	}
	g.metrics.observe(routeName, decision, reason, status, elapsed)
	// The record is written behind the response: with a durable log,
	// waiting for its fsync would hold the end of every response. Whether
	// the log can record was checked before the request was forwarded
	// (fail closed), and the service's sidecar records its own decision
	// before the app sees anything. Run waits for these on shutdown.
	ctx := context.WithoutCancel(x.r.Context())
	g.records.Go(func() {
		if err := g.cfg.Events.Emit(ctx, ev); err != nil {
			g.log.Error("access record not written", "request_id", x.id, "err", err)
		}
	})
}

// traceID returns the trace id of a W3C traceparent header, or "".
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	if _, err := hex.DecodeString(parts[1]); err != nil {
		return ""
	}
	return parts[1]
}

// secureHeaders adds, to every response the gateway sends, HSTS (HTTPS
// only, two years, subdomains) and nosniff (browsers must not guess a
// content type an API did not declare), unless the service set its own.
func secureHeaders(h http.Header) {
	if h.Get("Strict-Transport-Security") == "" {
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	}
	if h.Get("X-Content-Type-Options") == "" {
		h.Set("X-Content-Type-Options", "nosniff")
	}
}

// recordingWriter records the status and bytes of a response.
type recordingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		secureHeaders(w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
		secureHeaders(w.Header())
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
