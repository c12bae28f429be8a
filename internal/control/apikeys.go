package control

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/store"
)

// API key limits.
const (
	MaxAPIKeyTTL    = 365 * 24 * time.Hour
	maxAPIKeyRoutes = 100
	// createAttempts bounds retries on a prefix collision (40 random bits:
	// one retry is already a rare event).
	createAttempts = 4
)

// API key statuses in APIKeyInfo.
const (
	StatusActive  = "active"
	StatusExpired = "expired"
	StatusRevoked = "revoked"
)

// isLabel reports whether s is a DNS label: lowercase letters, digits and
// '-', starting and ending with a letter or digit, 1 to 63 characters. It
// is the shape of application and route names.
func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// checkAPIKeyRequest validates a create request and returns the scopes
// (deduplicated, in order) and the expiry (zero: never) relative to now.
func checkAPIKeyRequest(req APIKeyRequest, now time.Time) (scopes []string, expires time.Time, err error) {
	if !isLabel(req.App) {
		return nil, time.Time{}, badRequest("bad_app", fmt.Sprintf("app %q must be a DNS label: lowercase letters, digits and '-', at most 63 characters", req.App))
	}
	if len(req.Routes) == 0 {
		return nil, time.Time{}, badRequest("bad_routes", `routes must name at least one route, or be ["*"] for every route`)
	}
	if len(req.Routes) > maxAPIKeyRoutes {
		return nil, time.Time{}, badRequest("bad_routes", fmt.Sprintf("%d routes: at most %d", len(req.Routes), maxAPIKeyRoutes))
	}
	for _, r := range req.Routes {
		switch {
		case r == authn.APIKeyScopeAll && len(req.Routes) > 1:
			return nil, time.Time{}, badRequest("bad_routes", `"*" already means every route: give it alone`)
		case r != authn.APIKeyScopeAll && !isLabel(r):
			return nil, time.Time{}, badRequest("bad_routes", fmt.Sprintf("route %q is not a route name (a DNS label) or \"*\"", r))
		case !slices.Contains(scopes, r):
			scopes = append(scopes, r)
		}
	}
	if req.TTL != "" {
		ttl, err := time.ParseDuration(req.TTL)
		if err != nil || ttl <= 0 || ttl > MaxAPIKeyTTL {
			return nil, time.Time{}, badRequest("bad_ttl", fmt.Sprintf("ttl %q must be a positive duration up to 8760h (one year), like 720h", req.TTL))
		}
		// Whole seconds: the store keeps microseconds, the API RFC 3339.
		expires = now.Add(ttl).Truncate(time.Second)
	}
	return scopes, expires, nil
}

// APIKeyInfoOf describes a stored key at time now, without its hash.
func APIKeyInfoOf(rec authn.APIKeyRecord, now time.Time) APIKeyInfo {
	status := StatusActive
	switch {
	case rec.Revoked:
		status = StatusRevoked
	case !rec.Expires.IsZero() && !now.Before(rec.Expires):
		status = StatusExpired
	}
	return APIKeyInfo{Prefix: rec.Prefix, App: rec.ID, Scopes: rec.Scopes, Created: rec.Created, Expires: rec.Expires, Status: status}
}

func (h *Handler) createAPIKey(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	ev := audit.Event{Type: "apikey.create", Actor: caller.String(), Source: remote(r)}
	var req APIKeyRequest
	err := decode(w, r, &req)
	var scopes []string
	var expires time.Time
	if err == nil {
		ev.Subject = req.App
		scopes, expires, err = checkAPIKeyRequest(req, time.Now())
	}
	var key string
	var rec authn.APIKeyRecord
	for i := 0; err == nil; i++ {
		if key, rec, err = authn.NewAPIKey(req.App, scopes, expires); err != nil {
			break
		}
		err = h.Store.CreateAPIKey(r.Context(), rec, caller.String())
		if !errors.Is(err, store.ErrExists) || i+1 == createAttempts {
			break
		}
		err = nil // prefix collision: another key
	}
	if err != nil {
		h.denied(r.Context(), ev, err)
		h.fail(w, r, err)
		return
	}
	h.apiKeys.changed()
	ev.Decision = "allow"
	// The plaintext key never goes into an event or a log line.
	ev.Fields = map[string]string{"prefix": rec.Prefix, "scopes": strings.Join(rec.Scopes, ","), "expires": expiryText(rec.Expires)}
	h.emit(r.Context(), ev)
	writeJSON(w, http.StatusOK, APIKeyCreated{Key: key, Prefix: rec.Prefix, App: rec.ID, Scopes: rec.Scopes, Created: rec.Created, Expires: rec.Expires})
}

func expiryText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func (h *Handler) listAPIKeys(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	recs, err := h.Store.ListAPIKeys(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	now := time.Now()
	out := make([]APIKeyInfo, len(recs))
	for i, rec := range recs {
		out[i] = APIKeyInfoOf(rec, now)
	}
	writeJSON(w, http.StatusOK, out)
}

// isPrefix reports whether s has the shape of an API key prefix: 8
// lowercase base32 characters.
func isPrefix(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

func (h *Handler) revokeAPIKey(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	ev := audit.Event{Type: "apikey.revoke", Actor: caller.String(), Source: remote(r)}
	var req APIKeyRevokeRequest
	err := decode(w, r, &req)
	if err == nil {
		ev.Subject = req.Prefix
		if !isPrefix(req.Prefix) {
			err = badRequest("bad_prefix", fmt.Sprintf("prefix %q is not an API key prefix (8 characters a-z, 2-7, as `ward apikey list` shows)", req.Prefix))
		}
	}
	if err == nil {
		err = h.Store.RevokeAPIKey(r.Context(), req.Prefix)
		if errors.Is(err, store.ErrNotFound) {
			err = &httpError{status: http.StatusNotFound, code: "not_found", msg: "no API key with prefix " + req.Prefix}
		}
	}
	var info APIKeyInfo
	if err == nil {
		info, err = h.apiKeyInfo(r.Context(), req.Prefix)
	}
	if err != nil {
		h.denied(r.Context(), ev, err)
		h.fail(w, r, err)
		return
	}
	h.apiKeys.changed()
	ev.Decision = "allow"
	ev.Fields = map[string]string{"prefix": info.Prefix, "app": info.App}
	h.emit(r.Context(), ev)
	writeJSON(w, http.StatusOK, info)
}

func (h *Handler) apiKeyInfo(ctx context.Context, prefix string) (APIKeyInfo, error) {
	recs, err := h.Store.ListAPIKeys(ctx)
	if err != nil {
		return APIKeyInfo{}, err
	}
	for _, rec := range recs {
		if rec.Prefix == prefix {
			return APIKeyInfoOf(rec, time.Now()), nil
		}
	}
	return APIKeyInfo{}, fmt.Errorf("api key %s vanished after its revocation", prefix)
}

// apiKeyFeed answers a gateway's long poll with every key once the version
// exceeds after.
//
// The feed hands out SHA-256 hashes of the keys. That is safe: a key's
// secret is 256 random bits, so a hash cannot be turned back into a key by
// any amount of guessing, and a gateway needs exactly the hash to check a
// presented key. The feed never carries a plaintext key.
func (h *Handler) apiKeyFeed(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	after, wait, err := feedQuery(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ctx, cancel := h.pollContext(r, wait)
	defer cancel()
	if err := h.apiKeys.wait(ctx, after, h.pollInterval(), h.Store.APIKeysVersion); err != nil {
		h.fail(w, r, err)
		return
	}
	// The version first, then the keys: the keys are at least as new as
	// the version, so a gateway never stays behind a change it was told of.
	ctx = context.WithoutCancel(r.Context())
	v, err := h.Store.APIKeysVersion(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	recs, err := h.Store.ListAPIKeys(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	feed := APIKeyFeed{Version: v, Keys: make([]APIKeyFeedEntry, len(recs))}
	for i, rec := range recs {
		feed.Keys[i] = APIKeyFeedEntry{Prefix: rec.Prefix, App: rec.ID, Hash: hex.EncodeToString(rec.Hash[:]),
			Scopes: rec.Scopes, Expires: rec.Expires, Revoked: rec.Revoked}
	}
	writeJSON(w, http.StatusOK, feed)
}

// feedQuery reads a long poll's ?after=N (default -1: answer at once) and
// ?wait=D (default 0, at most maxWait).
func feedQuery(r *http.Request) (after int64, wait time.Duration, err error) {
	q := r.URL.Query()
	after = -1
	if s := q.Get("after"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < -1 {
			return 0, 0, badRequest("bad_query", "after must be an integer version")
		}
		after = v
	}
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxWait {
			return 0, 0, badRequest("bad_query", "wait must be a duration up to 60s")
		}
		wait = d
	}
	return after, wait, nil
}

func (h *Handler) pollInterval() time.Duration {
	if h.PollInterval == 0 {
		return pollInterval
	}
	return h.PollInterval
}

// feedSignal wakes long polls of this server when it changed a feed
// itself; changes made by another server sharing the store are seen by
// polling.
type feedSignal struct {
	mu sync.Mutex
	ch chan struct{} // closed and replaced on every change
}

func (s *feedSignal) current() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *feedSignal) changed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// wait returns once version() exceeds after or ctx is done (a long poll
// that timed out answers with the current state, so that is not an error).
func (s *feedSignal) wait(ctx context.Context, after int64, poll time.Duration, version func(context.Context) (int64, error)) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		woken := s.current() // before reading the version: no change is missed
		v, err := version(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		case v > after:
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-woken:
		case <-t.C:
		}
	}
}

// isGateway reports whether id is a gateway's, spiffe://<td>/gateway/<name>.
func isGateway(id spiffeid.ID) bool {
	name, ok := strings.CutPrefix(id.Path(), "/gateway/")
	return ok && name != "" && !strings.Contains(name, "/")
}

// gateway admits gateway SVIDs only. A refusal is audited: a workload
// asking for gateway material is worth an operator's look.
func (h *Handler) gateway(next idHandler) http.HandlerFunc {
	return h.workload(func(w http.ResponseWriter, r *http.Request, id spiffeid.ID) {
		if !isGateway(id) {
			err := &httpError{status: http.StatusForbidden, code: "not_gateway", msg: id.String() + " is not a gateway"}
			h.denied(r.Context(), audit.Event{Type: "control.gateway", Actor: id.String(), Subject: r.URL.Path, Source: remote(r)}, err)
			h.fail(w, r, err)
			return
		}
		next(w, r, id)
	})
}

func (h *Handler) emit(ctx context.Context, e audit.Event) {
	e.Time = time.Now()
	sink := h.Events
	if sink == nil {
		sink = audit.SlogSink{Log: h.Log}
	}
	if err := sink.Emit(ctx, e); err != nil {
		h.Log.Error("audit event not recorded", "type", e.Type, "err", err)
	}
}

// denied emits e as a deny with err's reason code ("internal" for a
// failure that is not the caller's).
func (h *Handler) denied(ctx context.Context, e audit.Event, err error) {
	e.Decision, e.Reason = "deny", "internal"
	var he *httpError
	var ref *ca.Refusal
	var csrErr *ca.CSRError
	switch {
	case errors.As(err, &he):
		e.Reason = he.code
	case errors.As(err, &ref):
		e.Reason = ref.Code
	case errors.As(err, &csrErr):
		e.Reason = "bad_csr"
	}
	h.emit(ctx, e)
}
