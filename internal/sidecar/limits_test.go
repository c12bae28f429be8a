package sidecar_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/sidecar"
)

// startLimited starts orders (limits.body 1KiB, POST allowed) and catalog,
// with orders' sidecar configured by mod.
func startLimited(t *testing.T, mod func(*sidecar.Config)) *twoServices {
	t.Helper()
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	y := meshYAML(ordersAddr, catalogAddr)
	y = strings.Replace(y, "spec: {protocol: http, endpoints:", "spec: {protocol: http, limits: {body: 1KiB}, endpoints:", 1)
	y = strings.Replace(y, "methods: [GET]", "methods: [GET, POST]", 1)
	m.writeConfig(y)
	ts := &twoServices{m: m}
	ts.orders = m.sidecarWith("orders", ordersAddr, newRecorder(t, nil), nil, mod)
	ts.catalog = m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)
	return ts
}

// TestBodyPastServiceLimitGets413 (issue 12 finding 9): a Service's
// limits.body bounds what its sidecar passes to the app: larger bodies,
// declared or chunked, get 413 and the app sees nothing of them.
func TestBodyPastServiceLimitGets413(t *testing.T) {
	ts := startLimited(t, nil)
	post := func(n int) string {
		return rawTLS(t, ts, "POST /orders/1 HTTP/1.1\r\nHost: orders\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n"+strings.Repeat("a", n))
	}
	if status := post(1024); !strings.HasPrefix(status, "200") {
		t.Fatalf("1 KiB body: %s", status)
	}
	before := ts.orders.app.count()
	if status := post(1025); !strings.HasPrefix(status, "413") {
		t.Fatalf("1 KiB + 1 body: %s, want 413", status)
	}
	if status := rawTLS(t, ts, "POST /orders/1 HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"+strings.Repeat("a", 2048)+"\r\n0\r\n\r\n"); !strings.HasPrefix(status, "413") {
		t.Fatalf("chunked 2 KiB body: %s, want 413", status)
	}
	if ts.orders.app.count() != before {
		t.Fatal("the app saw a body over the service's limit")
	}
	denied := 0
	for _, ev := range ts.orders.events.Events() {
		if ev.Type == "sidecar.request" && ev.Decision == "deny" && ev.Reason == "body_too_large" {
			denied++
		}
	}
	if denied != 2 {
		t.Errorf("%d body refusals in the audit trail, want 2", denied)
	}
}

// TestSlowBodyAtSidecarGets408 (issue 12 finding 8): a body that falls
// below the minimum rate is refused with 408 by the sidecar and never
// holds one of the app's connections: the app does not see the request.
func TestSlowBodyAtSidecarGets408(t *testing.T) {
	ts := startLimited(t, func(c *sidecar.Config) {
		c.Bodies = proxy.NewBodies(proxy.BodyConfig{MinRate: 1024, Grace: time.Second})
	})
	cfg := ts.catalog.src.ClientTLSConfig(identity.AuthorizeID(ts.orders.src.Current().ID))
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", ts.orders.sc.InboundAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(8 * time.Second))
	if _, err := io.WriteString(c, "POST /orders/1 HTTP/1.1\r\nHost: orders\r\nContent-Length: 1000\r\n\r\na"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a body below the minimum rate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("408 after %v, want about the 1s grace", d)
	}
	if n := ts.orders.app.count(); n != 0 {
		t.Fatalf("the app saw %d requests", n)
	}
}

// TestSlowHeadAtSidecarIsCut (issue 13: the sidecar's guard had no header
// timeout, unlike the gateway's): a mesh peer that sends a request head
// byte by byte is answered 408 and cut off once ReadHeaderTimeout passes,
// and the app sees nothing.
func TestSlowHeadAtSidecarIsCut(t *testing.T) {
	ts := startLimited(t, func(c *sidecar.Config) { c.Limits.ReadHeaderTimeout = 300 * time.Millisecond })
	cfg := ts.catalog.src.ClientTLSConfig(identity.AuthorizeID(ts.orders.src.Current().ID))
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", ts.orders.sc.InboundAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(5 * time.Second))
	head := "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nX-Slow: "
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // one byte every 50 ms, never finishing the head
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := io.WriteString(c, "a"); err != nil {
					return
				}
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("after %v: %v, want a 408", took, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || took > 3*time.Second {
		t.Fatalf("slow head: %s after %v, want 408 within about 300ms", resp.Status, took)
	}
	if n := ts.orders.app.count(); n != 0 {
		t.Fatalf("the app saw %d requests", n)
	}
}
