package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/gateway"
)

// record returns the gateway's request record of the response's request id.
func (e *edge) record(resp *http.Response) audit.Event {
	e.t.Helper()
	id := resp.Header.Get(gateway.HeaderRequestID)
	for _, ev := range e.events.Events() {
		if ev.RequestID == id && ev.Type == gateway.EventRequest {
			return ev
		}
	}
	e.t.Fatalf("no %s record for request %s", gateway.EventRequest, id)
	return audit.Event{}
}

func (e *edge) send(method, path, ct, body string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url(path), strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b := bodyOf(resp)
	resp.Body.Close()
	resp.Body = http.NoBody
	resp.Header.Set("X-Test-Body", b)
	return resp
}

func TestWAFPerRoute(t *testing.T) {
	e := newEdge(t)
	sqli := url.QueryEscape("1' OR '1'='1' --") // 942100 alone at paranoia 1
	xss := url.QueryEscape("<script>alert(1)</script>")
	for _, tc := range []struct {
		name, method, path, ct, body string
		status                       int
		verdict, rule, loc           string
	}{
		{"off route passes an attack", "GET", "/catalog/x?q=" + xss, "", "", 200, "", "", ""},
		{"enforce blocks sqli in the query", "GET", "/catalog/waf/x?id=" + sqli, "", "", 403, "blocked", "942100", "ARGS:id"},
		{"enforce blocks xss in a form body", "POST", "/catalog/waf/x", "application/x-www-form-urlencoded", "comment=" + xss, 403, "blocked", "941100", "ARGS:comment"},
		{"enforce blocks sqli in a json body", "POST", "/catalog/waf/x", "application/json", `{"filter":"1' UNION SELECT password FROM users --"}`, 403, "blocked", "942100", "ARGS:json.filter"},
		{"enforce passes benign json", "POST", "/catalog/waf/x", "application/json", `{"note":"Don't forget: it's at https://example.com/a?b=c — merci!","md":"# Title\n*bold* \"quoted\""}`, 200, "", "", ""},
		{"enforce refuses a body over its bound", "POST", "/catalog/waf/x", "application/json", `{"pad":"` + strings.Repeat("a", 5000) + `"}`, 403, "blocked", "", ""},
		{"enforce refuses a malformed json body", "POST", "/catalog/waf/x", "application/json", `{"a": "b`, 403, "blocked", "200002", ""},
		{"dry-run forwards and records", "GET", "/catalog/waf-dry/x?id=" + sqli, "", "", 200, "would_block", "942100", "ARGS:id"},
		{"exclusion silences its rule on its parameter", "GET", "/catalog/waf-tuned/x?q=" + sqli, "", "", 200, "", "", ""},
		{"exclusion leaves other parameters", "GET", "/catalog/waf-tuned/x?id=" + sqli, "", "", 403, "blocked", "942100", "ARGS:id"},
		{"overBound pass forwards and records", "POST", "/catalog/waf-tuned/x", "application/json", `{"pad":"` + strings.Repeat("a", 2000) + `"}`, 200, "body_not_inspected", "", ""},
		{"paranoia 1 passes what paranoia 4 blocks (p1)", "GET", "/catalog/waf/x?a=" + url.QueryEscape("hello world!!!"), "", "", 200, "", "", ""},
		{"paranoia 1 passes what paranoia 4 blocks (p4)", "GET", "/catalog/waf-p4/x?a=" + url.QueryEscape("hello world!!!"), "", "", 403, "blocked", "", "ARGS:a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.catalog.app.count()
			resp := e.send(tc.method, tc.path, tc.ct, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, resp.Header.Get("X-Test-Body"))
			}
			forwarded := e.catalog.app.count() > before
			if forwarded != (tc.status == 200) {
				t.Errorf("forwarded=%v with status %d", forwarded, tc.status)
			}
			ev := e.record(resp)
			if got := ev.HTTP.WAF; got != tc.verdict {
				t.Errorf("record waf=%q, want %q (%+v)", got, tc.verdict, ev.HTTP)
			}
			if tc.rule != "" && !strings.Contains(","+ev.HTTP.WAFRules+",", ","+tc.rule+",") {
				t.Errorf("record rules %q, want %s", ev.HTTP.WAFRules, tc.rule)
			}
			if tc.loc != "" && !strings.Contains(ev.HTTP.WAFLocation, tc.loc) {
				t.Errorf("record location %q, want %s", ev.HTTP.WAFLocation, tc.loc)
			}
			if tc.verdict == "blocked" || tc.verdict == "would_block" {
				if ev.HTTP.WAFScore < 5 && tc.rule != "200002" && tc.rule != "" {
					t.Errorf("record score %d", ev.HTTP.WAFScore)
				}
			}
			if strings.Contains(ev.HTTP.WAFLocation+ev.HTTP.Message, "OR '1'") || strings.Contains(ev.HTTP.Message, "<script>") {
				t.Errorf("record carries the payload: %+v", ev.HTTP)
			}
			if tc.status == 403 {
				var body map[string]string
				if err := json.Unmarshal([]byte(resp.Header.Get("X-Test-Body")), &body); err != nil {
					t.Fatal(err)
				}
				if body["reason"] != "waf" || body["request_id"] != resp.Header.Get(gateway.HeaderRequestID) || len(body) != 3 {
					t.Errorf("refusal body %v", body)
				}
				if ev.Reason != "waf" || ev.Decision != "deny" {
					t.Errorf("record %s/%s", ev.Decision, ev.Reason)
				}
			}
		})
	}
}

// TestWAFReload: a change of a route's waf applies on reload, atomically
// with the rest of the configuration: enforce becomes dry-run (the same
// injection is then forwarded and recorded as would_block), and an
// invalid exclusion is refused with the old configuration kept.
func TestWAFReload(t *testing.T) {
	e := newEdge(t)
	sqli := "/catalog/waf/x?id=" + url.QueryEscape("1' OR '1'='1' --")
	if r := e.send("GET", sqli, "", ""); r.StatusCode != 403 {
		t.Fatalf("before: %d", r.StatusCode)
	}
	cfg := readConfig(t, e)
	const enforce = "  waf: {mode: enforce, body: 4KiB}\n"
	if !strings.Contains(cfg, enforce) {
		t.Fatal("fixture changed: no enforcing waf route")
	}
	e.writeConfig(strings.Replace(cfg, enforce, "  waf: {mode: enforce, body: 4KiB, exclusions: [{rule: 1, parameter: id}]}\n", 1))
	time.Sleep(2500 * time.Millisecond) // two reload periods: the invalid file is refused
	if r := e.send("GET", sqli, "", ""); r.StatusCode != 403 {
		t.Fatalf("after an invalid change: %d, want the old configuration's 403", r.StatusCode)
	}
	e.writeConfig(strings.Replace(cfg, enforce, "  waf: {mode: dry-run, body: 4KiB}\n", 1))
	var resp *http.Response
	waitReload(t, e, func() bool { resp = e.send("GET", sqli, "", ""); return resp.StatusCode == 200 })
	if ev := e.record(resp); ev.HTTP.WAF != "would_block" || ev.HTTP.WAFRules != "942100" {
		t.Errorf("after the switch to dry-run: %+v", ev.HTTP)
	}
}
