package sidecar_test

import (
	"bufio"
	"fmt"
	"net"
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

// TestL4Ban: a banned workload's TCP connection to a tcp service is
// closed before policy, the app never sees it, and the connection record
// says banned.
func TestL4Ban(t *testing.T) {
	m := newMesh(t)
	dbAddr, apiAddr := freeAddr(t), freeAddr(t)
	m.writeConfig(fmt.Sprintf(`apiVersion: ward/v1
kind: Service
metadata: {name: db}
spec: {protocol: tcp, endpoints: [%q]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: api}
spec: {endpoints: [%q]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: db-callers}
spec:
  target: db
  rules: [{from: [svc/api]}]
`, dbAddr, apiAddr) + banDoc("api", "spiffeID: spiffe://example.org/svc/api", time.Now().Add(time.Hour)))
	echo, accepted := tcpEcho(t)
	db := m.sidecar("db", dbAddr, &recorder{addr: echo}, nil)
	apiUp := freeAddr(t)
	m.sidecar("api", apiAddr, newRecorder(t, nil), map[string]string{"db": apiUp})
	conn, err := net.Dial("tcp", apiUp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "SELECT 1;\n")
	if _, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
		t.Fatal("a banned workload's L4 connection got an answer")
	}
	if accepted() != 0 {
		t.Fatal("the app accepted a banned workload's connection")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		found := false
		for _, ev := range db.events.Events() {
			found = found || ev.Type == "sidecar.connection" && ev.Decision == "deny" && ev.Reason == "banned"
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banned connection record: %+v", db.events.Events())
		}
	}
}
