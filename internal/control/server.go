package control

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
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
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/dashboard"
	"github.com/wardsec/ward/internal/store"
	"github.com/wardsec/ward/internal/vault"
)

// Limits on what the API reads.
const (
	maxBodyBytes = 64 << 10
	maxWait      = 60 * time.Second
	pollInterval = 250 * time.Millisecond
)

// Handler serves the API for one CA.
type Handler struct {
	CA    *ca.CA
	Store store.Store
	Log   *slog.Logger
	// PollInterval is how often a long poll (trust, API keys) checks the
	// store for changes made by another server.
	PollInterval time.Duration
	// Events receives the audit events of API key and edge certificate
	// requests (the CA emits its own); nil logs them to Log.
	Events audit.Sink
	// EdgeNames are the patterns of the names gateways may get edge
	// certificates for (see CheckEdgeNames); none when empty.
	EdgeNames []string
	// AuditLog receives the audit records gateways and sidecars ship
	// (POST /v1/audit); nil refuses them.
	AuditLog *audit.Writer
	// FlowRetention is how long flow records are kept; zero:
	// DefaultFlowRetention.
	FlowRetention time.Duration
	// Dashboard keeps the dashboard's login links and sessions; nil: a
	// new one when API is called.
	Dashboard *dashboard.Auth
	// Vault keeps the secrets (see secrets.go); nil: every vault endpoint
	// answers that the vault is sealed.
	Vault *vault.Vault
	// InstanceTTL is how long a registered instance lives without a
	// renewal; zero: DefaultInstanceTTL.
	InstanceTTL time.Duration

	apiKeys   feedSignal
	resources versionFeed   // the newest resource version known
	resCache  resourceCache // the newest parsed resource set
	live      liveFeed      // the registered instances (instances_feed.go)
	renewed   renewals      // instance renewals not yet written

	auditLocks logLocks // one shipped batch at a time per sending log
	flowPrune  flowPrune

	polls polls // long polls in progress, ended by StopPolls

	detection detection // the detector over ingested records (detection.go)
}

// StopPolls makes every long poll in progress, and every one that starts
// later, answer at once with what it has: a server shutting down does not
// wait out its watchers' 30-second polls, and they move on to another
// server.
func (h *Handler) StopPolls() { h.polls.stop() }

// pollContext bounds a long poll: it ends after wait, when the caller goes
// away, or when the server stops (StopPolls).
func (h *Handler) pollContext(r *http.Request, wait time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	remove := h.polls.add(cancel)
	return ctx, func() { remove(); cancel() }
}

// polls holds the cancel functions of the long polls in progress.
type polls struct {
	mu      sync.Mutex
	stopped bool
	next    uint64
	cancels map[uint64]context.CancelFunc
}

// add registers a poll's cancel, or calls it at once after stop; remove
// forgets it when the poll ends.
func (p *polls) add(cancel context.CancelFunc) (remove func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		cancel()
		return func() {}
	}
	if p.cancels == nil {
		p.cancels = map[uint64]context.CancelFunc{}
	}
	id := p.next
	p.next++
	p.cancels[id] = cancel
	return func() {
		p.mu.Lock()
		delete(p.cancels, id)
		p.mu.Unlock()
	}
}

// stop ends every poll in progress and every later one.
func (p *polls) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, cancel := range p.cancels {
		cancel()
	}
	clear(p.cancels)
}

// API returns the mux for the TLS listener.
func (h *Handler) API() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathEnroll, h.enroll)
	mux.HandleFunc("POST "+PathRenew, h.renew)
	mux.HandleFunc("GET "+PathTrust, h.workload(h.trust))
	mux.HandleFunc("GET "+PathBundle, h.bundle)
	mux.HandleFunc("POST "+PathTokens, h.operator(accessAdmin, h.createToken))
	mux.HandleFunc("GET "+PathCerts, h.operator(accessRead, h.listCerts))
	mux.HandleFunc("POST "+PathRevoke, h.operator(accessAdmin, h.revoke))
	mux.HandleFunc("GET "+PathAuthorities, h.operator(accessRead, h.authorities))
	mux.HandleFunc("POST "+PathRotate, h.operator(accessAdmin, h.rotate))
	mux.HandleFunc("POST "+PathRetire, h.operator(accessAdmin, h.retire))
	mux.HandleFunc("POST "+PathAPIKeys, h.operator(accessAdmin, h.createAPIKey))
	mux.HandleFunc("GET "+PathAPIKeys, h.operator(accessRead, h.listAPIKeys))
	mux.HandleFunc("POST "+PathAPIKeyRevoke, h.operator(accessAdmin, h.revokeAPIKey))
	mux.HandleFunc("GET "+PathResources, h.operator(accessRead, h.getResources))
	mux.HandleFunc("POST "+PathApply, h.operator(accessResources, h.applyResources))
	mux.HandleFunc("POST "+PathDelete, h.operator(accessResources, h.deleteResource))
	mux.HandleFunc("POST "+PathRollback, h.operator(accessResources, h.rollback))
	mux.HandleFunc("GET "+PathHistory, h.operator(accessRead, h.history))
	mux.HandleFunc("GET "+PathHistory+"/{version}", h.operator(accessRead, h.historyVersion))
	mux.HandleFunc("GET "+PathOperators, h.operator(accessRead, h.listOperators))
	mux.HandleFunc("POST "+PathOperators, h.operator(accessAdmin, h.createOperator))
	mux.HandleFunc("GET "+PathSnapshot, h.workload(h.snapshot))
	mux.HandleFunc("GET "+PathAPIKeyFeed, h.gateway(h.apiKeyFeed))
	mux.HandleFunc("POST "+PathEdgeCert, h.gateway(h.edgeCert))
	mux.HandleFunc("POST "+PathAudit, h.workload(h.ingestAudit))
	mux.HandleFunc("POST "+PathFlows, h.workload(h.ingestFlows))
	mux.HandleFunc("GET "+PathFlows, h.operator(accessRead, h.listFlows))
	mux.HandleFunc("POST "+PathInstances, h.workload(h.registerInstance))
	mux.HandleFunc("GET "+PathInstances, h.operator(accessRead, h.listInstances))
	mux.HandleFunc("POST "+PathInstance+"{id}/renew", h.workload(h.renewInstance))
	mux.HandleFunc("DELETE "+PathInstance+"{id}", h.workload(h.recordedChange(h.deregisterInstance)))
	if h.Dashboard == nil {
		h.Dashboard = dashboard.NewAuth()
		h.Dashboard.OnLogin = h.dashboardLoggedIn
	}
	mux.HandleFunc("POST "+PathDashboardLogin, h.operator(accessRead, h.dashboardLogin))
	mux.Handle("/ui/", h.browser())
	h.vaultRoutes(mux)
	h.public(mux)
	return h.recorded(h.secretPaths(mux))
}

// recorded fails closed: while the audit log cannot record, every request
// that changes something (POST: enrollment, issuance, revocation, keys) is
// refused with 503 before it runs, so nothing happens unrecorded.
func (h *Handler) recorded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && h.Events != nil {
			if err := audit.Ready(h.Events); err != nil {
				h.fail(w, r, &httpError{status: http.StatusServiceUnavailable, code: "audit_unavailable", msg: "the audit log cannot record: " + err.Error()})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Public returns the mux for the plain HTTP listener: what relying parties
// fetch without credentials (signed CRLs, OCSP, the bundle, health).
func (h *Handler) Public(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	h.public(mux)
	mux.HandleFunc("GET "+PathBundle, h.bundle)
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

func (h *Handler) public(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathCRL+"{file}", h.crl)
	mux.HandleFunc("GET "+PathCACert+"{file}", h.caCert)
	mux.HandleFunc("POST "+PathOCSP, h.ocspPost)
	mux.HandleFunc("GET "+PathOCSP+"/{req...}", h.ocspGet)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, ServerStatus{}) })
}

// SealedPublic is all a sealed server serves, on its public listener:
// PathStatus says it is sealed, /healthz answers 503 "sealed", and
// everything else 503 with the same reason.
func SealedPublic() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, ServerStatus{Sealed: true})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "sealed\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, Error{Code: "sealed",
			Message: "the server is sealed: it waits for its key-encryption key on standard input"})
	})
	return mux
}

// httpError is what a client is told; the cause is only logged.
type httpError struct {
	status int
	code   string
	msg    string
	cause  error
	// problems locate what is wrong in refused resources.
	problems []Problem
}

func (e *httpError) Error() string { return e.msg }

func badRequest(code, msg string) *httpError {
	return &httpError{status: http.StatusBadRequest, code: code, msg: msg}
}

// refusalStatus maps CA refusal codes to HTTP statuses.
var refusalStatus = map[string]int{
	"token_malformed": http.StatusUnauthorized,
	"token_unknown":   http.StatusUnauthorized,
	"token_used":      http.StatusUnauthorized,
	"token_voided":    http.StatusUnauthorized,
	"token_expired":   http.StatusUnauthorized,
	"no_credential":   http.StatusUnauthorized,
	"bad_credential":  http.StatusUnauthorized,
	"revoked":         http.StatusUnauthorized,
	"not_found":       http.StatusNotFound,
	"active":          http.StatusConflict,
	"in_use":          http.StatusConflict,
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	he := &httpError{status: http.StatusInternalServerError, code: "internal", msg: "internal error", cause: err}
	var ref *ca.Refusal
	var csrErr *ca.CSRError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &ref):
		he = &httpError{status: http.StatusBadRequest, code: ref.Code, msg: ref.Msg}
		if s, ok := refusalStatus[ref.Code]; ok {
			he.status = s
		}
	case errors.As(err, &csrErr):
		he = badRequest("bad_csr", csrErr.Error())
	}
	switch {
	case he.status >= 500 && r.Context().Err() != nil:
		// The caller went away (a proxy stopping mid long poll): nobody
		// reads the answer and nothing is wrong with the server.
		h.Log.Debug("request abandoned by its caller", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	case he.status >= 500:
		h.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, he.status, Error{Code: he.code, Message: he.msg, Problems: he.problems})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body strictly: bounded size, no unknown fields, one value.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeLimit(w, r, v, maxBodyBytes)
}

// decodeLimit is decode with a body limit of its own.
func decodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &httpError{status: http.StatusUnsupportedMediaType, code: "bad_content_type", msg: "body must be application/json"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &httpError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: fmt.Sprintf("body exceeds %d bytes", limit)}
		}
		return badRequest("bad_json", "malformed JSON body: "+err.Error())
	}
	if dec.More() {
		return badRequest("bad_json", "body holds more than one JSON value")
	}
	return nil
}

func remote(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) svidResponse(w http.ResponseWriter, iss *ca.Issued) {
	writeJSON(w, http.StatusOK, SVIDResponse{SVID: string(iss.ChainPEM()), Bundle: string(h.CA.Bundle().PEM())})
}

func (h *Handler) enroll(w http.ResponseWriter, r *http.Request) {
	var req EnrollRequest
	if err := decode(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	iss, err := h.CA.Enroll(r.Context(), req.Token, req.CSR, remote(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.svidResponse(w, iss)
}

func (h *Handler) renew(w http.ResponseWriter, r *http.Request) {
	var req RenewRequest
	if err := decode(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	iss, err := h.CA.Renew(r.Context(), peerLeaf(r), req.CSR, remote(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.svidResponse(w, iss)
}

func peerLeaf(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// authenticate checks the client certificate on every request, not only at
// the handshake: a kept-alive connection must not outlive its credential.
func (h *Handler) authenticate(r *http.Request) (spiffeid.ID, error) {
	leaf := peerLeaf(r)
	if leaf == nil {
		return spiffeid.ID{}, &httpError{status: http.StatusUnauthorized, code: "no_credential", msg: "a client certificate is required"}
	}
	id, err := h.CA.Bundle().VerifySVID(leaf, time.Now())
	if err != nil {
		return spiffeid.ID{}, &httpError{status: http.StatusUnauthorized, code: "bad_credential", msg: "client certificate is not valid: " + err.Error()}
	}
	rec, err := h.Store.GetCertificate(r.Context(), ca.SerialText(leaf.SerialNumber))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return spiffeid.ID{}, &httpError{status: http.StatusUnauthorized, code: "bad_credential", msg: "client certificate is not in the inventory"}
	case err != nil:
		return spiffeid.ID{}, err
	case rec.Revoked():
		return spiffeid.ID{}, &httpError{status: http.StatusUnauthorized, code: "revoked", msg: "client certificate is revoked"}
	}
	return id, nil
}

type idHandler func(w http.ResponseWriter, r *http.Request, caller spiffeid.ID)

// workload admits any valid, unrevoked SVID of the trust domain.
func (h *Handler) workload(next idHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := h.authenticate(r)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		next(w, r, id)
	}
}

func (h *Handler) trust(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	after, wait, err := feedQuery(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ctx, cancel := h.pollContext(r, wait)
	defer cancel()
	v, serials, bundle, err := h.CA.WaitTrust(ctx, after, h.pollInterval())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TrustResponse{Version: v, Serials: serials, Bundle: string(bundle.PEM())})
}

func (h *Handler) bundle(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(h.CA.Bundle().PEM())
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	var req TokenRequest
	if err := decode(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	id, err := spiffeid.FromString(req.ID)
	if err != nil {
		h.fail(w, r, badRequest("bad_id", fmt.Sprintf("id %q is not a SPIFFE ID: %v", req.ID, err)))
		return
	}
	ttl := 10 * time.Minute
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			h.fail(w, r, badRequest("bad_ttl", fmt.Sprintf("ttl %q is not a duration like 10m", req.TTL)))
			return
		}
	}
	tok, exp, err := h.CA.CreateToken(r.Context(), id, ttl, caller.String())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TokenResponse{Token: tok, ID: id.String(), ExpiresAt: exp})
}

// CertInfoOf describes a stored certificate at time now.
func CertInfoOf(c store.Certificate, now time.Time) CertInfo {
	status := "valid"
	switch {
	case c.Revoked():
		status = "revoked"
	case !c.NotAfter.After(now):
		status = "expired"
	}
	return CertInfo{Serial: c.Serial, ID: c.SPIFFEID, Issuer: c.IssuerID, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Status: status, RevokedAt: c.RevokedAt}
}

func (h *Handler) listCerts(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	q := r.URL.Query()
	now := time.Now()
	f := store.CertFilter{SPIFFEID: q.Get("id"), ValidAt: now, Limit: 10000}
	if q.Get("all") == "1" {
		f.ValidAt = time.Time{}
	}
	certs, err := h.Store.ListCertificates(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]CertInfo, len(certs))
	for i, c := range certs {
		out[i] = CertInfoOf(c, now)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	var req RevokeRequest
	if err := decode(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	reason, err := ca.ParseReason(req.Reason)
	if err != nil {
		h.fail(w, r, badRequest("bad_reason", err.Error()))
		return
	}
	var revoked []store.Certificate
	switch {
	case (req.Serial == "") == (req.ID == ""):
		err = badRequest("bad_request", "give exactly one of serial and id")
	case req.Serial != "":
		var c store.Certificate
		c, err = h.CA.RevokeSerial(r.Context(), req.Serial, reason, caller.String())
		revoked = append(revoked, c)
	default:
		var id spiffeid.ID
		if id, err = spiffeid.FromString(req.ID); err != nil {
			err = badRequest("bad_id", fmt.Sprintf("id %q is not a SPIFFE ID: %v", req.ID, err))
			break
		}
		revoked, err = h.CA.RevokeID(r.Context(), id, reason, caller.String())
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.removeRevokedInstances(r.Context(), caller, revoked)
	resp := RevokeResponse{Revoked: make([]CertInfo, len(revoked))}
	for i, c := range revoked {
		resp.Revoked[i] = CertInfoOf(c, time.Now())
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) authorities(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	auths, certs, err := h.CA.Authorities(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]AuthorityInfo, len(auths))
	for i, a := range auths {
		out[i] = AuthorityInfo{ID: a.ID, Kind: a.Kind, State: a.State, Subject: certs[i].Subject.String(), NotAfter: certs[i].NotAfter}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) rotate(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	a, err := h.CA.Rotate(r.Context(), caller.String())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, AuthorityInfo{ID: a.ID, Kind: a.Kind, State: a.State})
}

func (h *Handler) retire(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	var req RetireRequest
	if err := decode(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.CA.Retire(r.Context(), req.ID, req.Force, caller.String()); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"retired": req.ID})
}

func (h *Handler) crl(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(r.PathValue("file"), ".crl")
	if !ok {
		h.fail(w, r, &httpError{status: http.StatusNotFound, code: "not_found", msg: "no such CRL"})
		return
	}
	der, err := h.CA.CRL(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(der)
}

// caCert serves an authority's certificate, DER, where the AIA caIssuers
// URL of what it signed points.
func (h *Handler) caCert(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(r.PathValue("file"), ".crt")
	if !ok {
		h.fail(w, r, &httpError{status: http.StatusNotFound, code: "not_found", msg: "no such certificate authority"})
		return
	}
	der, err := h.CA.AuthorityCertificate(id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	_, _ = w.Write(der)
}

// ocspMalformed is the DER of an OCSPResponse with status malformedRequest.
var ocspMalformed = []byte{0x30, 0x03, 0x0A, 0x01, 0x01}

func (h *Handler) ocspPost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, ca.MaxOCSPRequest+1))
	if err != nil {
		h.writeOCSP(w, ocspMalformed)
		return
	}
	h.answerOCSP(w, r, body)
}

func (h *Handler) ocspGet(w http.ResponseWriter, r *http.Request) {
	// RFC 6960 appendix A: base64 of the DER, URL-encoded, in the path.
	raw := r.PathValue("req")
	der, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		der, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(raw, "="))
	}
	if err != nil {
		h.writeOCSP(w, ocspMalformed)
		return
	}
	h.answerOCSP(w, r, der)
}

func (h *Handler) answerOCSP(w http.ResponseWriter, r *http.Request, der []byte) {
	resp, err := h.CA.OCSP(r.Context(), der)
	if err != nil {
		var ref *ca.Refusal
		if !errors.As(err, &ref) {
			h.Log.Error("OCSP failed", "err", err)
		}
		h.writeOCSP(w, ocspMalformed)
		return
	}
	h.writeOCSP(w, resp)
}

func (h *Handler) writeOCSP(w http.ResponseWriter, der []byte) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(der)
}

// TLSConfig is the API listener's TLS configuration: TLS 1.3, the server's
// own certificate, and client certificates requested (enrollment has none).
// A presented certificate is verified per request by authenticate (and by
// the CA on renewal), so a refused one gets a clear answer instead of a
// broken handshake and a long-lived connection cannot outlive its credential.
func (h *Handler) TLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: getCert,
		ClientAuth:     tls.RequestClientCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
