package sidecar_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/sidecar"
)

func banDoc(name, target string, expires time.Time) string {
	return fmt.Sprintf("---\napiVersion: ward/v1\nkind: Ban\nmetadata: {name: %s}\nspec:\n  %s\n  expires: %s\n  reason: test\n",
		name, target, expires.UTC().Format(time.RFC3339))
}

// TestBanStage: a Ban on a workload's SPIFFE ID refuses its calls 403
// banned at the callee's sidecar, before policy and before the app; the
// record names the ban; at its expiry the calls go through again without
// a new snapshot.
func TestBanStage(t *testing.T) {
	ts, ordersAddr, catalogAddr := startTwoFromSnapshots(t)
	c := ts.catalog.outbound()
	if status, _, _ := get(t, c, "GET", "http://orders/orders/1", nil); status != 200 {
		t.Fatalf("before the ban: %d", status)
	}
	seen := ts.orders.app.count()
	end := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	data := meshYAML(ordersAddr, catalogAddr) + banDoc("catalog", "spiffeID: spiffe://example.org/svc/catalog", end)
	if err := ts.orders.sc.Apply(sidecar.Snapshot{Origin: "server version 2", Version: 2, Data: []byte(data)}); err != nil {
		t.Fatal(err)
	}
	status, body, hdr := get(t, c, "GET", "http://orders/orders/1", nil)
	if status != 403 || hdr.Get("X-Ward-Deny-Reason") != "banned" || strings.Contains(body, "Ban catalog") {
		t.Fatalf("banned workload: %d %q %s", status, hdr.Get("X-Ward-Deny-Reason"), body)
	}
	if ts.orders.app.count() != seen {
		t.Fatal("the app saw a banned call")
	}
	found := false
	for _, ev := range ts.orders.events.Events() {
		found = found || ev.Reason == "banned" && strings.Contains(ev.HTTP.Message, "Ban catalog")
	}
	if !found {
		t.Fatal("no record names the ban")
	}
	time.Sleep(time.Until(end) + 50*time.Millisecond)
	if status, _, _ := get(t, c, "GET", "http://orders/orders/1", nil); status != 200 {
		t.Fatalf("after the ban's expiry: %d, want 200", status)
	}
}
