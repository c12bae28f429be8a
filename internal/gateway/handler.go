package gateway

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/idtoken"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/ratelimit"
	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/waf"
)

// Headers.
const (
	// HeaderAPIKey carries the application's API key.
	HeaderAPIKey = "X-Api-Key"
	// HeaderRequestID is set on every response and sent upstream; it joins
	// the gateway's access record to the sidecar's.
	HeaderRequestID = pipeline.HeaderRequestID
	// HeaderClientIP carries the client's address to the service.
	HeaderClientIP = "X-Ward-Client-Ip"
)

// Reason codes of the gateway's own decisions, for tests and callers that
// name them; the registry in package pipeline holds their statuses.
const (
	ReasonAllowed         = "allowed"
	ReasonConditionFailed = "route_condition_failed"
	ReasonLimiterDown     = "ratelimit_unavailable"
)

// state is the gateway's part of an exchange.
type state struct {
	snap  *snapshot
	route *route
	p     authn.Principal
	rec   audit.Event // the decision recorded before forwarding; the outcome reuses it

	waf       waf.Finding // the WAF's finding, for the record
	bodyReady bool        // the WAF stage received the body already
}

type exchange = pipeline.Exchange[state]

// newPipeline returns the gateway's request path: hygiene, admission,
// routing, authentication, authorization, rate limit, input inspection,
// forwarding; the
// record is written once the response is over.
func (g *Gateway) newPipeline() *pipeline.Pipeline[state] {
	return pipeline.New(pipeline.Config[state]{
		Stages: []pipeline.Stage[state]{
			{Name: "hygiene", Run: g.hygiene},
			{Name: "ban", Run: g.ban},
			{Name: "admit", Run: g.admit},
			{Name: "route", Run: g.findRoute},
			{Name: "authenticate", Run: g.authenticate},
			{Name: "ban-user", Run: g.banUser},
			{Name: "authorize", Run: g.authorize},
			{Name: "limit", Run: g.rateLimit},
			{Name: "waf", Run: g.inspect},
			{Name: "forward", Run: g.forward},
		},
		Begin: func(x *exchange) {
			x.State.snap = g.snap()
			x.State.p.Source = x.Source
			x.State.p.AnonymousID = authn.AnonymousID(g.anon, x.Source, x.R.UserAgent())
		},
		Record:   g.record,
		OnHeader: secureHeaders,
	})
}

// findRoute normalizes the path and finds the request's Route.
func (g *Gateway) findRoute(x *exchange) pipeline.Refusal {
	r := x.R
	path, err := policy.NormalizePath(r.URL.EscapedPath())
	if err != nil {
		return pipeline.Refuse(pipeline.AmbiguousPath, err.Error())
	}
	x.Path = path
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	x.State.route = x.State.snap.match(host, path)
	if x.State.route == nil {
		return pipeline.Refuse(pipeline.NoRoute, fmt.Sprintf("no route for host %q path %s", host, path))
	}
	return pipeline.Refusal{}
}

// authenticate builds the Principal the route asks for.
func (g *Gateway) authenticate(x *exchange) pipeline.Refusal {
	r, spec, p := x.R, &x.State.route.spec, &x.State.p
	key := r.Header.Get(HeaderAPIKey)
	switch {
	case key == "" && spec.Auth.APIKey == resource.APIKeyRequired:
		return pipeline.Refuse(pipeline.APIKeyMissing, "no "+HeaderAPIKey+" header")
	case key != "" && spec.Auth.APIKey != resource.APIKeyNone:
		app, err := g.keys.Authenticate(r.Context(), key, x.State.route.name, time.Now())
		if err != nil {
			return authFailure(err)
		}
		p.AppID, p.KeyPrefix, p.KeyScopes = app.AppID, app.KeyPrefix, app.KeyScopes
	}
	switch spec.Auth.User {
	case resource.UserJWT:
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			return pipeline.Refuse(pipeline.JWTMissing, "no bearer token in Authorization")
		}
		snap := x.State.snap
		if snap.jwt == nil {
			return pipeline.Refuse(pipeline.IssuersNotDefined, "route needs a JWT but no Issuer is defined")
		}
		user, err := g.jwtCache.verify(r.Context(), snap.jwt, tok, spec.Auth.Issuers)
		if err != nil {
			return authFailure(err)
		}
		p.User, p.Issuer, p.Claims, p.Scopes = user.User, user.Issuer, user.Claims, user.Scopes
	case resource.UserMTLS:
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			return pipeline.Refuse(pipeline.CertMissing, "no verified client certificate")
		}
		leaf := r.TLS.VerifiedChains[0][0]
		p.User, p.Issuer = certUser(leaf.Subject.CommonName, leaf.EmailAddresses), "mtls"
		p.Claims = map[string]any{"sub": p.User}
	}
	return pipeline.Refusal{}
}

func certUser(cn string, emails []string) string {
	if len(emails) > 0 {
		return emails[0]
	}
	return cn
}

// authFailure turns an authentication error into its refusal: the
// registry says which are 401, 403 (a key out of scope) or 503 (the
// credential could not be checked at all).
func authFailure(err error) pipeline.Refusal {
	return pipeline.Refuse(pipeline.Lookup(authn.ReasonOf(err)), err.Error())
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
func (g *Gateway) authorize(x *exchange) pipeline.Refusal {
	rt, snap := x.State.route, x.State.snap
	req := policy.Request{Target: rt.service, Peer: g.id, Method: x.R.Method, Path: x.Path, Header: x.R.Header, Claims: userVars(&x.State.p)}
	ok, err := snap.engine.RouteCondition(rt.name, req)
	if err != nil {
		return pipeline.Refuse(pipeline.ConditionFailed, "route condition: "+err.Error())
	}
	if !ok {
		return pipeline.Refuse(pipeline.ConditionFailed, "route condition does not hold")
	}
	dec := snap.engine.Decide(req)
	if !dec.Allow {
		return pipeline.Refuse(pipeline.Lookup(dec.Reason), dec.Message)
	}
	return pipeline.Refusal{}
}

// rateLimit applies the route's limit to the caller's key.
func (g *Gateway) rateLimit(x *exchange) pipeline.Refusal {
	rt := x.State.route
	if rt.limit.Rate.Count == 0 {
		return pipeline.Refusal{}
	}
	key := "route:" + rt.name
	for _, kind := range rt.keys {
		key += "|" + x.State.p.LimitKey(kind)
	}
	res, err := g.limiter.Allow(x.R.Context(), key, rt.limit)
	if err != nil {
		// Fail closed: a limit that cannot be counted is not enforced, and
		// the point of a limit is that it is.
		return pipeline.Refuse(pipeline.LimiterDown, err.Error())
	}
	ratelimit.Headers(x.W.Header(), rt.limit, res)
	if !res.Allowed {
		return pipeline.Refuse(pipeline.RateLimited, "limit "+rt.limit.Rate.String()+" for "+key)
	}
	return pipeline.Refusal{}
}

// forward sends the request into the mesh.
func (g *Gateway) forward(x *exchange) pipeline.Refusal {
	r, rt := x.R, x.State.route
	if err := audit.Ready(g.cfg.Events); err != nil {
		// Fail closed: a request that cannot be recorded is not forwarded.
		return pipeline.Refuse(pipeline.AuditUnavailable, err.Error())
	}
	up, err := g.mesh.Upstream(rt.service)
	if err != nil {
		return pipeline.Refuse(pipeline.UnknownService, err.Error())
	}
	if !x.State.bodyReady {
		if ref := g.prepareBody(x); ref.Refused() {
			return ref
		}
	}
	tok, err := g.tokens.get(g.cfg.Source.Current(), &x.State.p, up.ID().String(), g.cfg.TokenTTL)
	if err != nil {
		return pipeline.Refuse(pipeline.TokenUnavailable, err.Error())
	}
	if !rt.spec.ForwardCredentials {
		r.Header.Del("Authorization")
		r.Header.Del(HeaderAPIKey)
	}
	r.Header.Set(idtoken.Header, tok)
	r.Header.Set(HeaderRequestID, x.ID)
	r.Header.Set(HeaderClientIP, x.Source) // what the gateway saw, never the client's claim
	proxy.SetPath(r.URL, x.Path)           // the service sees the path that was authorized
	// The decision is recorded before the service sees the request, so
	// that a gateway killed mid-request leaves the record of every request
	// that reached a service; what cannot be recorded is not forwarded.
	// The outcome (status, size, latency) follows as gateway.response.
	x.State.rec = g.event(x, EventRequest)
	if err := g.cfg.Events.Emit(r.Context(), x.State.rec); err != nil {
		return pipeline.Refuse(pipeline.AuditUnavailable, err.Error())
	}
	x.Recorded = true
	up.ServeHTTP(&x.W, r)
	return pipeline.Refusal{}
}

// Event types of the gateway's access records.
const (
	// EventRequest is the decision on a request: written before a
	// forwarded request reaches the service, or with the refusal.
	EventRequest = "gateway.request"
	// EventResponse is the outcome of a forwarded request (status, bytes,
	// latency), written once the response is over; it shares the
	// request's id.
	EventResponse = "gateway.response"
)

// event is the exchange's access record as of now.
func (g *Gateway) event(x *exchange, typ string) audit.Event {
	decision, reason := "allow", ReasonAllowed
	if x.Refusal.Refused() {
		decision, reason = "deny", x.Refusal.Reason.Code
	}
	routeName, service := "", ""
	if x.State.route != nil {
		routeName, service = x.State.route.name, x.State.route.service
	}
	p, r := &x.State.p, x.R
	msg := x.Refusal.Detail
	if msg == "" {
		msg = x.State.waf.Detail // a dry-run block or a match under the threshold
	}
	return audit.Event{
		Time: time.Now(), Type: typ, Actor: p.Key(authn.KeyKindUser), Subject: g.id.String(),
		Decision: decision, Reason: reason, Source: r.RemoteAddr, Service: service, User: p.User, App: p.AppID,
		RequestID: x.ID, TraceID: traceID(r.Header.Get("Traceparent")),
		HTTP: audit.HTTP{
			Route: routeName, Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(), Proto: r.Proto,
			BytesIn: max(r.ContentLength, 0), AnonymousID: p.AnonymousID, KeyPrefix: p.KeyPrefix, UserIssuer: p.Issuer,
			Message: msg,
			WAF:     x.State.waf.Verdict, WAFRules: x.State.waf.Rules, WAFScore: x.State.waf.Score, WAFLocation: x.State.waf.Location,
		},
	}
}

// record writes, once the response is over and from the request's own
// goroutine, the refusal's record or the forwarded request's outcome.
func (g *Gateway) record(x *exchange) {
	status := x.W.Status
	if status == 0 {
		status = http.StatusOK
	}
	elapsed := time.Since(x.Start)
	var ev audit.Event
	if x.Recorded && !x.Refusal.Refused() {
		ev = x.State.rec // the decision's record, built once
		ev.Time, ev.Type = time.Now(), EventResponse
	} else {
		ev = g.event(x, EventRequest)
	}
	ev.Result = strconv.Itoa(status)
	ev.HTTP.Status, ev.HTTP.BytesOut, ev.HTTP.LatencyUS = status, x.W.Bytes, elapsed.Microseconds()
	g.metrics.observe(ev.HTTP.Route, ev.Decision, ev.Reason, status, elapsed)
	if g.cfg.Flows != nil {
		g.cfg.Flows.Observe(flowSample(&ev, elapsed))
	}
	if err := g.cfg.Events.Emit(context.WithoutCancel(x.R.Context()), ev); err != nil {
		g.log.Error("access record not written", "request_id", x.ID, "err", err)
	}
}

// flowSample is a request's record as an edge of the flows: from the API
// key's application, or "public" without one, to the route's service
// ("-" when no route matched).
func flowSample(ev *audit.Event, elapsed time.Duration) flows.Sample {
	src, dst := ev.App, ev.Service
	if src == "" {
		src = "public"
	}
	if dst == "" {
		dst = "-"
	}
	return flows.Sample{Source: src, Dest: dst, Method: ev.HTTP.Method, Path: ev.HTTP.Path, Decision: ev.Decision,
		Reason: ev.Reason, Policy: ev.HTTP.Route, Status: ev.HTTP.Status, Latency: elapsed}
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
