package sidecar_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
)

// lastRequestRecord is the newest sidecar.request record of orders.
func lastRequestRecord(ts *twoServices) audit.Event {
	var last audit.Event
	for _, ev := range ts.orders.events.Events() {
		if ev.Type == "sidecar.request" {
			last = ev
		}
	}
	return last
}

// TestWAFAtTheSidecar: a Service's waf is applied by its sidecar, after
// policy: in enforce an injection is refused with 403 and reason waf and
// never reaches the app, benign traffic passes, and the records name the
// rules; switched to dry-run by a reload, the same request reaches the app
// and its record says it would have been blocked.
func TestWAFAtTheSidecar(t *testing.T) {
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	conf := func(mode string) string {
		y := meshYAML(ordersAddr, catalogAddr)
		y = strings.Replace(y, "spec: {protocol: http, endpoints:", "spec: {protocol: http, waf: {mode: "+mode+"}, endpoints:", 1)
		return strings.Replace(y, "methods: [GET]", "methods: [GET, POST]", 1)
	}
	m.writeConfig(conf("enforce"))
	ts := &twoServices{m: m}
	ts.orders = m.sidecar("orders", ordersAddr, newRecorder(t, nil), nil)
	ts.catalog = m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)

	sqli := "/orders/1?id=" + url.QueryEscape("1' OR '1'='1' --")
	getReq := func(target string) string {
		return rawTLS(t, ts, "GET "+target+" HTTP/1.1\r\nHost: orders\r\nUser-Agent: shop/1.0\r\nAccept: */*\r\n\r\n")
	}
	postJSON := func(body string) string {
		return rawTLS(t, ts, "POST /orders/1 HTTP/1.1\r\nHost: orders\r\nUser-Agent: shop/1.0\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: "+
			strconv.Itoa(len(body))+"\r\n\r\n"+body)
	}

	if st := getReq("/orders/1?q=" + url.QueryEscape("women's shoes")); !strings.HasPrefix(st, "200") {
		t.Fatalf("benign GET: %s", st)
	}
	if st := postJSON(`{"note":"It's a gift — \"fragile\", see https://example.com/x?y=1"}`); !strings.HasPrefix(st, "200") {
		t.Fatalf("benign JSON POST: %s", st)
	}
	before := ts.orders.app.count()
	if st := getReq(sqli); !strings.HasPrefix(st, "403") {
		t.Fatalf("injection in enforce: %s, want 403", st)
	}
	ev := lastRequestRecord(ts)
	if ev.Decision != "deny" || ev.Reason != "waf" || ev.HTTP.WAF != "blocked" || !strings.Contains(ev.HTTP.WAFRules, "942100") ||
		ev.HTTP.WAFScore < 5 || ev.HTTP.WAFLocation != "ARGS:id" {
		t.Errorf("enforce record: %s/%s %+v", ev.Decision, ev.Reason, ev.HTTP)
	}
	if st := postJSON(`{"filter":"1' UNION SELECT password FROM users --"}`); !strings.HasPrefix(st, "403") {
		t.Fatalf("injection in a JSON body: %s, want 403", st)
	}
	if ts.orders.app.count() != before {
		t.Fatal("the app saw a request the WAF refused")
	}

	m.writeConfig(conf("dry-run"))
	deadline := time.Now().Add(10 * time.Second)
	for st := getReq(sqli); !strings.HasPrefix(st, "200"); st = getReq(sqli) {
		if time.Now().After(deadline) {
			t.Fatalf("after the switch to dry-run: %s", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ev = lastRequestRecord(ts)
	if ev.Decision != "allow" || ev.HTTP.WAF != "would_block" || !strings.Contains(ev.HTTP.WAFRules, "942100") || ev.HTTP.WAFLocation != "ARGS:id" {
		t.Errorf("dry-run record: %s/%s %+v", ev.Decision, ev.Reason, ev.HTTP)
	}
	if strings.Contains(ev.HTTP.Message, "OR '1'") {
		t.Errorf("record carries the payload: %q", ev.HTTP.Message)
	}
}
