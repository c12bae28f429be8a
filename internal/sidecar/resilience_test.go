package sidecar_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/sidecar"
)

// TestEjection: with two instances of orders, killing one loses no request
// (it is ejected, the call retried on the other); when it comes back it
// gets traffic again.
func TestEjection(t *testing.T) {
	m := newMesh(t)
	a, b, catalogAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	m.writeConfig(strings.Replace(meshYAML(a, catalogAddr), fmt.Sprintf("[%q]", a), fmt.Sprintf("[%q, %q]", a, b), 1))
	appA := newRecorder(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "A") })
	appB := newRecorder(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "B") })
	m.sidecar("orders", a, appA, nil)
	ordersB := m.sidecar("orders", b, appB, nil)
	catalog := m.sidecarWith("catalog", catalogAddr, newRecorder(t, nil), nil, func(c *sidecar.Config) {
		c.Resilience.Ejector = proxy.EjectorConfig{Failures: 1, BaseEjection: 500 * time.Millisecond, MaxEjection: time.Second}
	})
	c := catalog.outbound()
	c.Transport.(*http.Transport).DisableKeepAlives = true
	served := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			status, body, _ := get(t, c, "GET", "http://orders/orders/1", nil)
			if status != 200 {
				t.Fatalf("request failed: %d %s", status, body)
			}
			got[body]++
		}
		return got
	}
	if got := served(10); got["A"] == 0 || got["B"] == 0 {
		t.Fatalf("both instances should serve: %v", got)
	}
	ordersB.stop()
	if got := served(20); got["B"] != 0 || got["A"] != 20 {
		t.Fatalf("after B died: %v", got)
	}
	m.sidecar("orders", b, appB, nil) // B comes back on the same address
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := served(4); got["B"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B never got traffic again")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRotationUnderLoad: both sidecars' SVIDs roll every two seconds while
// catalog calls orders without pause; not one request fails.
func TestRotationUnderLoad(t *testing.T) {
	m := newMeshTTL(t, 4*time.Second)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	m.writeConfig(meshYAML(ordersAddr, catalogAddr))
	orders := m.sidecar("orders", ordersAddr, newRecorder(t, nil), nil)
	catalog := m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)
	c := catalog.outbound()
	serials := map[string]bool{}
	failures, total := 0, 0
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); {
		status, body, _ := get(t, c, "GET", "http://orders/orders/1", nil)
		total++
		if status != 200 {
			failures++
			t.Logf("request %d: %d %s", total, status, body)
		}
		serials[orders.src.Current().Serial()] = true
		serials[catalog.src.Current().Serial()] = true
	}
	t.Logf("%d requests, %d failed, %d SVIDs seen", total, failures, len(serials))
	if failures != 0 {
		t.Fatalf("%d of %d requests failed during rotation", failures, total)
	}
	if len(serials) < 6 {
		t.Fatalf("only %d SVIDs seen: rotation did not happen", len(serials))
	}
}

func TestMetrics(t *testing.T) {
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	m.writeConfig(meshYAML(ordersAddr, catalogAddr))
	orders := m.sidecarWith("orders", ordersAddr, newRecorder(t, nil), nil, func(c *sidecar.Config) { c.Admin = "127.0.0.1:0" })
	catalog := m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)
	c := catalog.outbound()
	get(t, c, "GET", "http://orders/orders/1", nil)
	get(t, c, "POST", "http://orders/orders/1", nil)
	_, body, _ := get(t, &http.Client{Timeout: 5 * time.Second}, "GET", "http://"+orders.sc.AdminAddr()+"/metrics", nil)
	for _, want := range []string{
		`ward_sidecar_requests_total{decision="allow",destination="orders",source="spiffe://example.org/svc/catalog",status="2xx"} 1`,
		`ward_sidecar_requests_total{decision="deny",destination="orders",source="spiffe://example.org/svc/catalog",status="4xx"} 1`,
		`ward_sidecar_request_duration_seconds_count{decision="allow",destination="orders",source="spiffe://example.org/svc/catalog"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestCallersHangingUpDoNotTripTheBreaker: callers that give up early are
// not upstream failures; the next caller is served.
func TestCallersHangingUpDoNotTripTheBreaker(t *testing.T) {
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	m.writeConfig(meshYAML(ordersAddr, catalogAddr))
	m.sidecar("orders", ordersAddr, newRecorder(t, func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(200 * time.Millisecond)
		fmt.Fprint(w, "slow")
	}), nil)
	catalog := m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)
	impatient := catalog.outbound()
	impatient.Timeout = 20 * time.Millisecond
	for range 12 {
		if resp, err := impatient.Get("http://orders/orders/1"); err == nil {
			resp.Body.Close()
		}
	}
	status, body, _ := get(t, catalog.outbound(), "GET", "http://orders/orders/1", nil)
	if status != 200 || body != "slow" {
		t.Fatalf("after impatient callers: %d %q", status, body)
	}
}
