package gateway_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/authn/authntest"
)

// TestForwardsWithIdentity: a request with a valid API key and JWT
// reaches orders through its sidecar; the app sees the verified user and
// application, Ward's identity token, and not the caller's credentials;
// the gateway's and the sidecar's records share the request id.
func TestForwardsWithIdentity(t *testing.T) {
	e := newEdge(t)
	resp := e.do("GET", "/orders/42", e.apiKey, e.jwt("alice", "orders:read", nil), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, bodyOf(resp))
	}
	if got := bodyOf(resp); got != "app saw GET /orders/42 user=alice app=shop" {
		t.Fatalf("body %q", got)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("client spoke %s, want HTTP/2", resp.Proto)
	}
	seen := e.orders.app.last()
	for _, h := range []string{"Authorization", "X-Api-Key"} {
		if v := seen.Header.Get(h); v != "" {
			t.Errorf("app received the caller's %s: %q", h, v)
		}
	}
	if seen.Header.Get("X-Ward-Identity") == "" || seen.Header.Get("X-Ward-Scopes") != "orders:read" {
		t.Errorf("app headers: %v", seen.Header)
	}
	if got := seen.Header.Get("X-Ward-Peer-Id"); got != "spiffe://example.org/gateway/edge" {
		t.Errorf("peer %q", got)
	}
	reqID := resp.Header.Get("X-Ward-Request-Id")
	if reqID == "" || seen.Header.Get("X-Ward-Request-Id") != reqID {
		t.Errorf("request id: client %q, app %q", reqID, seen.Header.Get("X-Ward-Request-Id"))
	}
	if resp.Header.Get("Strict-Transport-Security") != "max-age=63072000; includeSubDomains" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("security headers: %v", resp.Header)
	}
	// The decision, recorded before the service saw the request, then
	// the outcome, with the same request id.
	gw := findEvent(t, e.events, reqID)
	if gw.Type != "gateway.request" || gw.Decision != "allow" || gw.User != "alice" || gw.App != "shop" || gw.Service != "orders" || gw.Field("route") != "orders" {
		t.Errorf("access record %+v", gw)
	}
	out := findEventOfType(t, e.events, reqID, "gateway.response")
	if out.Result != "200" || out.Field("status") != "200" || out.Field("route") != "orders" || out.User != "alice" {
		t.Errorf("outcome record %+v", out)
	}
	sc := findEvent(t, e.orders.events, reqID)
	if sc.Type != "sidecar.request" || sc.User != "alice" || sc.App != "shop" {
		t.Errorf("sidecar record %+v", sc)
	}
}

// findEvent returns the event with request id reqID, waiting a little:
// the gateway writes its access record behind the response.
func findEvent(t *testing.T, r *audit.Recorder, reqID string) audit.Event {
	t.Helper()
	return findEventOfType(t, r, reqID, "")
}

// findEventOfType waits for the first event of reqID of type typ ("": any).
func findEventOfType(t *testing.T, r *audit.Recorder, reqID, typ string) audit.Event {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, ev := range r.Events() {
			if ev.RequestID == reqID && (typ == "" || ev.Type == typ) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event with request id %s in %+v", reqID, r.Events())
		}
	}
}

// refusal is what a test expects for a refused request.
type refusal struct {
	status int
	reason string
}

func (e *edge) expectRefused(t *testing.T, resp *http.Response, want refusal, before int, app *recorder) {
	t.Helper()
	if resp.StatusCode != want.status || resp.Header.Get("X-Ward-Deny-Reason") != want.reason {
		t.Fatalf("got %d %q (%s), want %d %q", resp.StatusCode, resp.Header.Get("X-Ward-Deny-Reason"), bodyOf(resp), want.status, want.reason)
	}
	var body struct{ Reason, RequestID string }
	if err := json.NewDecoder(resp.Body).Decode(&struct {
		Reason    *string `json:"reason"`
		RequestID *string `json:"request_id"`
	}{&body.Reason, &body.RequestID}); err != nil || body.Reason != want.reason || body.RequestID == "" {
		t.Fatalf("body: %+v, %v", body, err)
	}
	if app.count() != before {
		t.Fatalf("the service saw the refused request")
	}
	ev := findEvent(t, e.events, body.RequestID)
	if ev.Decision != "deny" || ev.Reason != want.reason {
		t.Fatalf("access record %+v", ev)
	}
}

// TestAPIKeyRefusals: missing, malformed, unknown, wrong-secret, revoked,
// expired and out-of-scope keys.
func TestAPIKeyRefusals(t *testing.T) {
	e := newEdge(t)
	jwt := e.jwt("alice", "orders:read", nil)
	revoked := e.addKey("gone", []string{"*"}, time.Time{})
	prefix, _ := authn.ParseAPIKey(revoked)
	if err := e.keys.Revoke(prefix); err != nil {
		t.Fatal(err)
	}
	expired := e.addKey("old", []string{"*"}, time.Now().Add(-time.Second))
	catalogOnly := e.addKey("browser", []string{"catalog"}, time.Time{})
	wrongSecret := e.apiKey[:len(e.apiKey)-4] + "AAAA"
	cases := map[string]struct {
		key  string
		want refusal
	}{
		"missing":      {"", refusal{401, "apikey_missing"}},
		"malformed":    {"hello", refusal{401, authn.ReasonAPIKeyMalformed}},
		"unknown":      {"wak_aaaaaaaa_" + strings.Repeat("A", 43), refusal{401, authn.ReasonAPIKeyUnknown}},
		"wrong secret": {wrongSecret, refusal{401, authn.ReasonAPIKeyUnknown}},
		"revoked":      {revoked, refusal{401, authn.ReasonAPIKeyRevoked}},
		"expired":      {expired, refusal{401, authn.ReasonAPIKeyExpired}},
		"out of scope": {catalogOnly, refusal{403, authn.ReasonAPIKeyOutOfScope}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			before := e.orders.app.count()
			e.expectRefused(t, e.do("GET", "/orders/1", c.key, jwt, nil), c.want, before, e.orders.app)
		})
	}
}

// TestJWTAttacks: every forged, stale or misdirected token is refused with
// its reason and the service sees nothing.
func TestJWTAttacks(t *testing.T) {
	e := newEdge(t)
	now := time.Now()
	valid := map[string]any{"iss": e.idp.URL, "sub": "alice", "aud": "ward-edge", "exp": now.Add(5 * time.Minute).Unix(), "scope": "orders:read"}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range valid {
			c[kk] = vv
		}
		c[k] = v
		return c
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(e.idpKey.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := e.jwt("alice", "orders:read", nil)
	parts := strings.Split(good, ".")
	cases := map[string]struct {
		token string
		want  refusal
	}{
		"missing":             {"", refusal{401, "jwt_missing"}},
		"alg none":            {authntest.Craft(t, map[string]any{"alg": "none"}, valid, nil), refusal{401, authn.ReasonJWTAlgNotAllowed}},
		"alg None":            {authntest.Craft(t, map[string]any{"alg": "None"}, valid, nil), refusal{401, authn.ReasonJWTAlgNotAllowed}},
		"empty signature":     {parts[0] + "." + parts[1] + ".", refusal{401, authn.ReasonJWTBadSignature}},
		"HS256 with pub key":  {authntest.HMACToken(t, "k1", pubPEM, valid), refusal{401, authn.ReasonJWTAlgNotAllowed}},
		"kid traversal":       {authntest.Sign(t, other, "ES256", "../../../../etc/passwd", nil, valid), refusal{401, authn.ReasonJWTUnknownKey}},
		"other key, same kid": {authntest.Sign(t, other, "ES256", "k1", nil, valid), refusal{401, authn.ReasonJWTBadSignature}},
		"expired":             {e.jwt("alice", "orders:read", map[string]any{"exp": now.Add(-time.Hour).Unix()}), refusal{401, authn.ReasonJWTExpired}},
		"not yet valid":       {e.jwt("alice", "orders:read", map[string]any{"nbf": now.Add(time.Hour).Unix()}), refusal{401, authn.ReasonJWTNotYetValid}},
		"wrong audience":      {e.jwt("alice", "orders:read", map[string]any{"aud": "someone-else"}), refusal{401, authn.ReasonJWTWrongAudience}},
		"wrong issuer":        {authntest.Sign(t, e.idpKey, "ES256", "k1", nil, with("iss", "https://evil.example")), refusal{401, authn.ReasonJWTWrongIssuer}},
		"ES256 r=s=0":         {authntest.Craft(t, map[string]any{"alg": "ES256", "kid": "k1"}, valid, make([]byte, 64)), refusal{401, authn.ReasonJWTBadSignature}},
		"no exp":              {e.jwt("alice", "orders:read", map[string]any{"exp": nil}), refusal{401, authn.ReasonJWTMissingClaim}},
		"garbage":             {"a.b.c", refusal{401, authn.ReasonJWTMalformed}},
		"payload swapped":     {parts[0] + "." + authntest.B64JSON(t, with("sub", "admin")) + "." + parts[2], refusal{401, authn.ReasonJWTBadSignature}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			before := e.orders.app.count()
			e.expectRefused(t, e.do("GET", "/orders/1", e.apiKey, c.token, nil), c.want, before, e.orders.app)
		})
	}
}

// TestPolicyAtTheEdge: a valid user without the orders:read scope is
// denied by the orders policy at the gateway, with the policy's reason.
func TestPolicyAtTheEdge(t *testing.T) {
	e := newEdge(t)
	before := e.orders.app.count()
	e.expectRefused(t, e.do("GET", "/orders/1", e.apiKey, e.jwt("bob", "catalog:read", nil), nil), refusal{403, "no_rule_matches"}, before, e.orders.app)
	e.expectRefused(t, e.do("DELETE", "/orders/1", e.apiKey, e.jwt("alice", "orders:read", nil), nil), refusal{403, "no_rule_matches"}, before, e.orders.app)
	e.expectRefused(t, e.do("GET", "/nowhere", e.apiKey, "", nil), refusal{404, "no_route"}, before, e.orders.app)
}

// TestAnonymous: a route without credentials still gives the caller a
// stable anonymous id, which the service receives.
func TestAnonymous(t *testing.T) {
	e := newEdge(t)
	var ids []string
	for range 2 {
		resp := e.do("GET", "/catalog/items", "", "", map[string]string{"User-Agent": "test-agent"})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, bodyOf(resp))
		}
		ids = append(ids, e.catalog.app.last().Header.Get("X-Ward-Anonymous-Id"))
	}
	if ids[0] == "" || ids[0] != ids[1] {
		t.Fatalf("anonymous ids %q", ids)
	}
	resp := e.do("GET", "/catalog/items", "", "", map[string]string{"User-Agent": "other-agent"})
	if resp.StatusCode != 200 || e.catalog.app.last().Header.Get("X-Ward-Anonymous-Id") == ids[0] {
		t.Fatalf("another agent got the same anonymous id")
	}
}

// TestInjectedIdentity: identity headers and tokens a client sends are
// removed; the service sees only what the gateway vouches for.
func TestInjectedIdentity(t *testing.T) {
	e := newEdge(t)
	forged := map[string]string{
		"X-Ward-User": "admin", "X-Ward-App": "root", "X-Ward-Peer-Id": "spiffe://example.org/svc/admin",
		"X-Ward-Identity": "forged", "X-Ward-Scopes": "orders:admin", "Proxy": "http://evil:8080", "X-Ward-Client-Ip": "10.0.0.1",
	}
	resp := e.do("GET", "/catalog/x", "", "", forged)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, bodyOf(resp))
	}
	h := e.catalog.app.last().Header
	if h.Get("X-Ward-User") != "" || h.Get("X-Ward-App") != "" || h.Get("X-Ward-Scopes") != "" || h.Get("Proxy") != "" {
		t.Errorf("forged headers reached the app: %v", h)
	}
	if h.Get("X-Ward-Peer-Id") != "spiffe://example.org/gateway/edge" || h.Get("X-Ward-Client-Ip") != "127.0.0.1" || h.Get("X-Ward-Identity") == "forged" {
		t.Errorf("app headers: %v", h)
	}
}

// TestRateLimit: the fourth request within a minute on /limited is
// refused with 429, Retry-After and RateLimit headers; another API key
// has its own budget.
func TestRateLimit(t *testing.T) {
	e := newEdge(t)
	for i := range 3 {
		resp := e.do("GET", "/limited", e.apiKey, "", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, bodyOf(resp))
		}
		if resp.Header.Get("RateLimit-Remaining") == "" {
			t.Fatalf("no RateLimit headers: %v", resp.Header)
		}
	}
	before := e.catalog.app.count()
	resp := e.do("GET", "/limited", e.apiKey, "", nil)
	e.expectRefused(t, resp, refusal{429, "rate_limited"}, before, e.catalog.app)
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After: %v", resp.Header)
	}
	other := e.addKey("other", []string{"*"}, time.Time{})
	if resp := e.do("GET", "/limited", other, "", nil); resp.StatusCode != 200 {
		t.Fatalf("another application: %d", resp.StatusCode)
	}
}

// rawTLS sends raw bytes over TLS (HTTP/1.1) to the gateway and returns the
// status line, or what went wrong.
func rawTLS(t *testing.T, e *edge, raw string) string {
	t.Helper()
	c, err := tls.Dial("tcp", e.gw.Addr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) //nolint:gosec // test client of a test server
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return "write: " + err.Error()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "read: " + err.Error()
	}
	defer resp.Body.Close()
	return resp.Status
}

// TestSmuggling: ambiguous HTTP/1.1 framing is refused before any route or
// policy runs, and the service sees nothing.
func TestSmuggling(t *testing.T) {
	e := newEdge(t)
	big := strings.Repeat("a", 64<<10)
	cases := map[string]string{
		"CL with TE":           "POST /catalog/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"TE with CL":           "POST /catalog/1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		"duplicate CL":         "POST /catalog/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		"bad chunking":         "POST /catalog/1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"chunk size too short": "POST /catalog/1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
		"TE obfuscated":        "POST /catalog/1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n",
		"TE on HTTP/1.0":       "POST /catalog/1 HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"NUL in header":        "GET /catalog/1 HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n",
		"underscore header":    "GET /catalog/1 HTTP/1.1\r\nHost: localhost\r\nX_Ward_User: admin\r\n\r\n",
		"obs-fold":             "GET /catalog/1 HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n",
		"oversized header":     "GET /catalog/1 HTTP/1.1\r\nHost: localhost\r\nX-Big: " + big + "\r\n\r\n",
		"too many headers":     "GET /catalog/1 HTTP/1.1\r\nHost: localhost\r\n" + strings.Repeat("X-A: b\r\n", 300) + "\r\n",
		"oversized URL":        "GET /catalog/" + big + " HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"body too large":       "POST /catalog/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\r\n",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			before := e.catalog.app.count()
			status := rawTLS(t, e, raw)
			if strings.HasPrefix(status, "2") {
				t.Fatalf("accepted: %s", status)
			}
			if e.catalog.app.count() != before {
				t.Fatalf("the service saw it (%s)", status)
			}
			t.Log(status)
		})
	}
	// A well-formed chunked request still works.
	if status := rawTLS(t, e, "POST /catalog/1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"); !strings.HasPrefix(status, "200") {
		t.Fatalf("good chunked request: %s", status)
	}
}

// TestSlowClient: a client that sends its head too slowly gets 408 and the
// service sees nothing.
func TestSlowClient(t *testing.T) {
	e := newEdge(t)
	c, err := tls.Dial("tcp", e.gw.Addr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) //nolint:gosec // test
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /catalog/1 HTTP/1.1\r\nHost: local")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response to a slow head: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	if e.catalog.app.count() != 0 {
		t.Fatal("the service saw the slow request")
	}
}

// TestDenyPathEncodings: /orders/admin... no: the catalog policy allows
// only /catalog/* and /limited; no spelling of /admin reaches the service.
func TestDenyPathEncodings(t *testing.T) {
	e := newEdge(t)
	paths := []string{
		"/admin", "/catalog/../admin", "/catalog/%2e%2e/admin", "/catalog/%2E%2E/admin", "/catalog/.%2e/admin",
		"/catalog/%2e%2e%2fadmin", "/catalog/..%2Fadmin", "/catalog/%252e%252e/admin", "/catalog/..;/admin",
		"/catalog/..%3B/admin", "/catalog/..\\admin", "/catalog/%5c../admin", "//admin", "/./admin", "/catalog/./../admin",
		"/catalog/%00/../../admin", "/catalog/%c0%ae%c0%ae/admin", "/catalog/%ef%bc%8e%ef%bc%8e/admin",
		"/%61dmin", "/ADMIN", "/catalog/../../admin", "/catalog/%u002e%u002e/admin", "/catalog%2f..%2fadmin",
	}
	for _, p := range paths {
		status := rawTLS(t, e, "GET "+p+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
		if strings.HasPrefix(status, "200") {
			t.Errorf("GET %s: %s", p, status)
		}
	}
	for _, r := range e.catalog.app.seen {
		if strings.Contains(strings.ToLower(r.URL.Path), "admin") {
			t.Errorf("service saw %s", r.URL.Path)
		}
	}
	if status := rawTLS(t, e, "GET /catalog/a/%2e/b HTTP/1.1\r\nHost: localhost\r\n\r\n"); !strings.HasPrefix(status, "200") {
		t.Fatalf("allowed path: %s", status)
	}
	if got := e.catalog.app.last().URL.Path; got != "/catalog/a/b" {
		t.Errorf("service saw %q, want the normalized /catalog/a/b", got)
	}
}
