package sidecar_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

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
