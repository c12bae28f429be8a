package control_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/dashboard"
	"github.com/wardsec/ward/internal/flows"
)

// browser is an HTTP client as a browser is: the server's CA trusted, no
// client certificate, cookies kept, redirects not followed.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func (ts *testServer) browser(t *testing.T) *browser {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ts.bundle.PEM())
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(c.CloseIdleConnections)
	return &browser{t: t, base: ts.URL(), c: c}
}

func (b *browser) do(method, path string, body any, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, b.base+path, r)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

// login opens a link from `ward dashboard login` of client op.
func (b *browser) login(op *control.Client) {
	b.t.Helper()
	link, err := op.DashboardLogin(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	path := strings.TrimPrefix(link.URL, b.base)
	if path == link.URL || !strings.HasPrefix(path, dashboard.PathLogin+"?token=") {
		b.t.Fatalf("login link %q is not on %s%s", link.URL, b.base, dashboard.PathLogin)
	}
	resp, body := b.do("GET", path, nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		b.t.Fatalf("login: %d %s, location %q", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	set := resp.Header.Get("Set-Cookie")
	for _, want := range []string{dashboard.CookieName + "=", "Path=/", "Secure", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(set, want) {
			b.t.Errorf("session cookie %q lacks %s", set, want)
		}
	}
	if again, _ := b.do("GET", path, nil, nil); again.StatusCode != http.StatusUnauthorized {
		b.t.Errorf("a login link worked twice: %d", again.StatusCode)
	}
	resp, body = b.do("GET", "/ui/api/session", nil, nil)
	var s struct{ Operator, CSRF string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &s) != nil || s.CSRF == "" {
		b.t.Fatalf("session: %d %s", resp.StatusCode, body)
	}
	b.csrf = s.CSRF
}

// TestDashboardAccess (issue 17): the dashboard's pages carry a strict
// CSP; its data needs a session from a one-time link; what changes
// something needs the session's CSRF token from the same origin; the
// session's operator has the role the admin API gives them; the admin
// API and the browser routes do not accept each other's credentials.
func TestDashboardAccess(t *testing.T) {
	ts := startServer(t, nil)
	anon := ts.browser(t)

	resp, body := anon.do("GET", "/ui/", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "ward dashboard login") {
		t.Errorf("/ui/ without a session: %d %q", resp.StatusCode, body)
	}
	for k, want := range map[string]string{
		"Content-Security-Policy": dashboard.CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	for _, bad := range []string{"'unsafe-inline'", "'unsafe-eval'", "*"} {
		if strings.Contains(dashboard.CSP, bad) {
			t.Errorf("the CSP allows %s", bad)
		}
	}
	for _, path := range []string{"/ui/static/index.html", "/ui/static/login.html"} {
		_, page := anon.do("GET", path, nil, nil)
		if strings.Contains(page, "<script>") || strings.Contains(page, " on") && strings.Contains(page, "onclick") || strings.Contains(page, "style=") {
			t.Errorf("%s has inline script or style", path)
		}
	}
	for _, path := range []string{"/ui/api/graph", "/ui/api/session", "/ui/api/why?request_id=x", "/ui/api/certs", "/ui/api/audit", "/ui/api/bans"} {
		if resp, body := anon.do("GET", path, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, _ := anon.do("GET", dashboard.PathLogin+"?token=forged", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a forged login token: %d", resp.StatusCode)
	}
	if resp, body := anon.do("POST", control.PathDashboardLogin, struct{}{}, nil); resp.StatusCode < 400 || strings.Contains(body, "token=") {
		t.Errorf("a login link without a client certificate: %d %s", resp.StatusCode, body)
	}

	admin := ts.browser(t)
	admin.login(ts.operator)
	if resp, body := admin.do("GET", "/ui/api/graph?since=1h", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"edges"`) {
		t.Errorf("graph as admin: %d %s", resp.StatusCode, body)
	}
	if resp, body := admin.do("GET", "/ui/", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `src="/ui/static/app.js"`) {
		t.Errorf("/ui/ with a session: %d %s", resp.StatusCode, body)
	}
	// The admin API does not take the cookie.
	if resp, _ := admin.do("GET", control.PathFlows+"?since=1h", nil, nil); resp.StatusCode < 400 {
		t.Errorf("the admin API answered a browser session without a client certificate: %d", resp.StatusCode)
	}

	doc := map[string]string{"yaml": "apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [\"127.0.0.1:9443\"]}\n"}
	for name, hdr := range map[string]map[string]string{
		"no token":     nil,
		"wrong token":  {dashboard.HeaderCSRF: "x" + admin.csrf},
		"cross origin": {dashboard.HeaderCSRF: admin.csrf, "Origin": "https://evil.example"},
		"cross site":   {dashboard.HeaderCSRF: admin.csrf, "Sec-Fetch-Site": "cross-site"},
	} {
		resp, body := admin.do("POST", "/ui/api/suggest/dry-run", doc, hdr)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "csrf") {
			t.Errorf("dry run with %s: %d %s, want 403 csrf", name, resp.StatusCode, body)
		}
	}
	resp, body = admin.do("POST", "/ui/api/suggest/dry-run", doc, map[string]string{dashboard.HeaderCSRF: admin.csrf, "Origin": admin.base, "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"dryRun":true`) || !strings.Contains(body, "+Service/orders") {
		t.Errorf("dry run with the CSRF token: %d %s", resp.StatusCode, body)
	}
	if cur, err := ts.operator.Resources(context.Background(), "Service", ""); err != nil || strings.Contains(cur.Documents, "orders") {
		t.Errorf("a dry run changed the resources: %v %q", err, cur.Documents)
	}

	// An auditor reads, and may not change anything, not even as a dry run.
	auditor := ts.browser(t)
	auditor.login(ts.operatorClient(t, "audra", "auditor"))
	if resp, body := auditor.do("GET", "/ui/api/certs?all=1", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "spiffe://") {
		t.Errorf("certificates as auditor: %d %s", resp.StatusCode, body)
	}
	if resp, body := auditor.do("GET", "/ui/api/bans", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"bans":[`) || !strings.Contains(body, `"alerts":`) {
		t.Errorf("bans as auditor: %d %s", resp.StatusCode, body)
	}
	resp, body = auditor.do("POST", "/ui/api/suggest/dry-run", doc, map[string]string{dashboard.HeaderCSRF: auditor.csrf})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "role_forbids") {
		t.Errorf("dry run as auditor: %d %s, want 403 role_forbids", resp.StatusCode, body)
	}

	// The graph names each service's owners.
	if err := ts.svcClient(t, "orders").ShipFlows(context.Background(), []flows.Record{flowRec("orders", "GET", time.Now())}); err != nil {
		t.Fatal(err)
	}
	ts.operatorClient(t, "dana", "developer", "orders")
	if resp, body := auditor.do("GET", "/ui/api/graph?since=1h", nil, nil); resp.StatusCode != http.StatusOK ||
		!strings.Contains(body, `{"name":"orders","group":"orders","owner":"dana","in":3,"out":0}`) ||
		!strings.Contains(body, `"source":"gateway/edge","dest":"orders","count":3`) {
		t.Errorf("graph with a flow: %d %s", resp.StatusCode, body)
	}

	// Logging out ends the session.
	if resp, body := admin.do("POST", "/ui/api/logout", struct{}{}, map[string]string{dashboard.HeaderCSRF: admin.csrf}); resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d %s", resp.StatusCode, body)
	}
	if resp, _ := admin.do("GET", "/ui/api/graph", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("graph after logout: %d", resp.StatusCode)
	}

	// Every use of a login link is on the record.
	logins := map[string]int{}
	if _, err := audit.Query(context.Background(), filepath.Join(ts.dir, control.DirAudit), audit.Filter{Type: "dashboard.login"}, func(r audit.Record) error {
		logins[r.Event.Decision+" "+r.Event.Actor]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if logins["allow spiffe://example.org/user/admin"] != 1 || logins["allow spiffe://example.org/user/audra"] != 1 || logins["deny "] != 3 {
		t.Errorf("dashboard.login records: %v; want admin's and audra's logins and 3 refused links", logins)
	}
}

// TestDashboardBans: an operator with a read-only role sees the active
// bans, with whom they name, why, until when and who made them; a session
// is needed.
func TestDashboardBans(t *testing.T) {
	ts := startServer(t, nil)
	if _, err := ts.operator.Apply(t.Context(), files(teams)); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(time.Hour).Truncate(time.Second)
	if _, err := ts.operator.Apply(t.Context(), files(banYAML("long", "apiKey: abcdefgh", end))); err != nil {
		t.Fatal(err)
	}
	if resp, body := ts.browser(t).do("GET", "/ui/api/bans", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bans without a session: %d %s", resp.StatusCode, body)
	}
	auditor := ts.browser(t)
	auditor.login(ts.operatorClient(t, "audra", "auditor"))
	resp, body := auditor.do("GET", "/ui/api/bans", nil, nil)
	for _, want := range []string{`"name":"long"`, `"kind":"api_key"`, `"target":"abcdefgh"`, `"reason":"brute force"`, `"by":"operator admin"`, `"expires":"` + end.UTC().Format(time.RFC3339) + `"`} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("bans as auditor: %d %s, want %s", resp.StatusCode, body, want)
		}
	}
}
