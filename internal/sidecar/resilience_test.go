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
