package sidecar_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/sidecar"
)

// failingLog cannot record: its disk failed.
type failingLog struct{}

func (failingLog) Emit(context.Context, audit.Event) error { return errors.New("audit log: disk full") }

// TestFailClosedWithoutAudit: a sidecar whose audit log cannot record
// refuses allowed requests with 503 and the app sees nothing.
func TestFailClosedWithoutAudit(t *testing.T) {
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	m.writeConfig(meshYAML(ordersAddr, catalogAddr))
	app := newRecorder(t, nil)
	m.sidecarWith("orders", ordersAddr, app, nil, func(c *sidecar.Config) { c.Events = failingLog{} })
	catalog := m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)
	status, body, hdr := get(t, catalog.outbound(), "GET", "http://orders/orders/42", nil)
	if status != http.StatusServiceUnavailable || hdr.Get("X-Ward-Deny-Reason") != "audit_unavailable" {
		t.Fatalf("got %d %q %v, want 503 audit_unavailable", status, body, hdr)
	}
	if app.count() != 0 {
		t.Fatal("the app saw a request that could not be recorded")
	}
}

// TestL4FailsClosedWithoutAudit (issue 12 finding 5): an allowed L4
// connection whose audit record cannot be written is closed before the app
// is dialed, like an HTTP request that cannot be recorded.
func TestL4FailsClosedWithoutAudit(t *testing.T) {
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
`, dbAddr, apiAddr))
	echo, accepted := tcpEcho(t)
	m.sidecarWith("db", dbAddr, &recorder{addr: echo}, nil, func(c *sidecar.Config) { c.Events = failingLog{} })
	apiUp := freeAddr(t)
	m.sidecar("api", apiAddr, newRecorder(t, nil), map[string]string{"db": apiUp})

	conn, err := net.Dial("tcp", apiUp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "SELECT 1;\n")
	if line, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
		t.Fatalf("an L4 connection that could not be recorded got an answer: %q", line)
	}
	if n := accepted(); n != 0 {
		t.Fatalf("the app accepted %d connections that could not be recorded", n)
	}
}
