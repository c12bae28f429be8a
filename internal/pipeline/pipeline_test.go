package pipeline

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/proxy"
)

// TestEveryReasonIsRegistered: each reason code the request path can
// produce has a status of its own; none falls through to Internal.
func TestEveryReasonIsRegistered(t *testing.T) {
	codes := []string{
		authn.ReasonAPIKeyMalformed, authn.ReasonAPIKeyUnknown, authn.ReasonAPIKeyRevoked, authn.ReasonAPIKeyExpired,
		authn.ReasonAPIKeyOutOfScope, authn.ReasonAPIKeyUnavailable, authn.ReasonJWTMalformed, authn.ReasonJWTTooLarge,
		authn.ReasonJWTAlgNotAllowed, authn.ReasonJWTUnknownKey, authn.ReasonJWTKeysUnavailable, authn.ReasonJWTBadSignature,
		authn.ReasonJWTWrongIssuer, authn.ReasonJWTWrongAudience, authn.ReasonJWTExpired, authn.ReasonJWTNotYetValid,
		authn.ReasonJWTMissingClaim,
		policy.ReasonNoPolicy, policy.ReasonNoRuleMatches, policy.ReasonAmbiguousPath, policy.ReasonConditionError,
		proxy.ReasonBodyTooLarge, proxy.ReasonBodyTooSlow, proxy.ReasonBodyBudget, proxy.ReasonBodyMalformed,
	}
	for _, c := range codes {
		r := Lookup(c)
		if r.Code != c || r.Status < 400 || r.Status > 599 {
			t.Errorf("reason %q: registered as %+v", c, r)
		}
	}
	if got := Lookup("not_a_reason"); got != Internal {
		t.Errorf("an unregistered code answers %+v, want Internal", got)
	}
	if !slices.IsSorted(Codes()) || len(Codes()) != len(registry) {
		t.Error("Codes is not the sorted registry")
	}
}

// TestEveryBadTokenIsChallenged: every refusal of a bearer token tells
// the client how to authenticate (RFC 6750), including a token missing a
// claim or too large, which the old per-role table missed.
func TestEveryBadTokenIsChallenged(t *testing.T) {
	for _, c := range Codes() {
		r := Lookup(c)
		isToken := strings.HasPrefix(c, "jwt_")
		switch {
		case c == JWTKeysUnavailable.Code:
			if r.Challenge != "" || r.Status != http.StatusServiceUnavailable {
				t.Errorf("%s: %+v; the issuer's keys failing is not the client's token", c, r)
			}
		case c == JWTMissing.Code:
			if r.Challenge != `Bearer realm="ward"` {
				t.Errorf("%s: challenge %q", c, r.Challenge)
			}
		case isToken:
			if r.Challenge != `Bearer realm="ward", error="invalid_token"` || r.Status != http.StatusUnauthorized {
				t.Errorf("%s: %+v", c, r)
			}
		case r.Challenge != "":
			t.Errorf("%s is not a token refusal but challenges: %q", c, r.Challenge)
		}
	}
}

var bodyShape = regexp.MustCompile(`^\{"error":"[a-z ]+","reason":"[a-z_]+","request_id":"[0-9a-f]{24}"\}\n$`)

// TestRenderSaysOnlyTheCode: the body is JSON with the status text, the
// registered code and the request id; the detail never reaches the client.
func TestRenderSaysOnlyTheCode(t *testing.T) {
	p := New(Config[struct{}]{
		Stages: []Stage[struct{}]{{Name: "deny", Run: func(x *Exchange[struct{}]) Refusal {
			return Refuse(JWTExpired, "token of alice@example.org expired at 12:00 (key k1)")
		}}},
		Record: func(*Exchange[struct{}]) {},
	})
	w := httptest.NewRecorder()
	p.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	body := w.Body.String()
	if w.Code != 401 || !bodyShape.MatchString(body) || strings.Contains(body, "alice") {
		t.Fatalf("%d %q", w.Code, body)
	}
	var v struct{ Error, Reason, RequestID string }
	if err := json.Unmarshal([]byte(body), &struct {
		Error     *string `json:"error"`
		Reason    *string `json:"reason"`
		RequestID *string `json:"request_id"`
	}{&v.Error, &v.Reason, &v.RequestID}); err != nil {
		t.Fatal(err)
	}
	h := w.Header()
	if v.Error != "unauthorized" || v.Reason != "jwt_expired" || v.RequestID != h.Get(HeaderRequestID) ||
		h.Get(HeaderDenyReason) != "jwt_expired" || h.Get("WWW-Authenticate") == "" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("%+v %v", v, h)
	}
	// Codes are Ward's own; were one ever to hold a quote, it could not
	// break out of the JSON string.
	if got := string(AppendBody(nil, Reason{Code: `x","admin":"1`, Status: 403}, "id")); got != `{"error":"forbidden","reason":"x___admin___1","request_id":"id"}`+"\n" {
		t.Fatalf("unsafe code rendered as %q", got)
	}
}

// TestStagesRunInOrderAndStopAtARefusal: a refusal stops the path, later
// stages do not run, releases run after the response in reverse order,
// and the record sees the refusal.
func TestStagesRunInOrderAndStopAtARefusal(t *testing.T) {
	var trail []string
	stage := func(name string, ref Refusal) Stage[int] {
		return Stage[int]{Name: name, Run: func(x *Exchange[int]) Refusal {
			trail = append(trail, name)
			x.State++
			x.Defer(func() { trail = append(trail, "release "+name) })
			return ref
		}}
	}
	var recorded Refusal
	var state int
	p := New(Config[int]{
		Stages: []Stage[int]{stage("a", Refusal{}), stage("b", Refuse(RateLimited, "over")), stage("c", Refusal{})},
		Record: func(x *Exchange[int]) { recorded, state = x.Refusal, x.State; trail = append(trail, "record") },
	})
	w := httptest.NewRecorder()
	p.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	want := []string{"a", "b", "release b", "release a", "record"}
	if !slices.Equal(trail, want) || recorded.Reason != RateLimited || recorded.Detail != "over" || state != 2 {
		t.Fatalf("trail %v, record saw %+v state %d", trail, recorded, state)
	}
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	// The pooled exchange starts clean: no state leaks between requests.
	trail = nil
	p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if state != 2 {
		t.Fatalf("second request started from state %d", state-2)
	}
}

// TestRequestIDsAreUnique: ids never repeat within a process, under
// concurrency, and carry the process's random prefix.
func TestRequestIDsAreUnique(t *testing.T) {
	const n, workers = 20000, 8
	ids := make(chan string, n*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range n {
				ids <- NewRequestID()
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] || len(id) != 24 || !ValidRequestID(id) || id[:14] != string(idPrefix[:]) {
			t.Fatalf("id %q repeated or malformed", id)
		}
		seen[id] = true
	}
}

func TestSourceIP(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.1:443": "10.0.0.1", "[::1]:80": "::1", "pipe": "pipe", "[::1": "[::1"} {
		if got := sourceIP(in); got != want {
			t.Errorf("sourceIP(%q) = %q, want %q", in, got, want)
		}
	}
}
