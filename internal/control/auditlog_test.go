package control_test

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
)

// TestIngestAudit: records a proxy ships land in the server's log once,
// attributed to the SVID that shipped them, even when the proxy resends;
// malformed batches are refused and change nothing; the log verifies with
// the server's audit key.
func TestIngestAudit(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	gw := ts.gatewayClient(t, "edge")
	const edge = "spiffe://example.org/gateway/edge"
	batch := []control.ShippedRecord{
		{Seq: 1, Event: audit.Event{Type: "gateway.request", Subject: edge, Decision: "allow", RequestID: "r1", User: "alice"}},
		{Seq: 2, Event: audit.Event{Type: "gateway.request", Subject: edge, Decision: "deny", Reason: "apikey_missing", RequestID: "r2"}},
	}
	if acked, err := gw.ShipAudit(ctx, testLog, batch); err != nil || acked != 2 {
		t.Fatalf("ShipAudit = %d, %v", acked, err)
	}
	// A resend after a lost ack, plus one new record.
	batch = append(batch, control.ShippedRecord{Seq: 3, Event: audit.Event{Type: "gateway.request", Subject: edge, RequestID: "r3"}})
	if acked, err := gw.ShipAudit(ctx, testLog, batch); err != nil || acked != 3 {
		t.Fatalf("resend: %d, %v", acked, err)
	}
	bad := map[string][]control.ShippedRecord{
		"out of order": {{Seq: 5}, {Seq: 4}},
		"too many":     make([]control.ShippedRecord, 1001),
	}
	for name, b := range bad {
		for i := range b {
			if b[i].Seq == 0 {
				b[i].Seq = uint64(10 + i)
			}
		}
		var ae *control.APIError
		if _, err := gw.ShipAudit(ctx, testLog, b); !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("%s: %v, want a 400", name, err)
		}
	}
	if _, err := ts.anon.ShipAudit(ctx, testLog, batch); err == nil {
		t.Error("a client without an SVID shipped records")
	}

	byID := map[string]int{}
	_, err := audit.Query(ctx, filepath.Join(ts.dir, control.DirAudit), audit.Filter{Type: "gateway.request"}, func(r audit.Record) error {
		byID[r.Event.RequestID]++
		if r.Event.Fields["reported_by"] != "spiffe://example.org/gateway/edge" {
			t.Errorf("record %d reported_by %q", r.Seq, r.Event.Fields["reported_by"])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(byID) != 3 || byID["r1"] != 1 || byID["r2"] != 1 || byID["r3"] != 1 {
		t.Fatalf("records by request id %v, want r1, r2, r3 once each", byID)
	}
	pub, err := readAuditPub(ts.dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(filepath.Join(ts.dir, control.DirAudit), pub)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %s", err, rep.Summary())
	}
}

func readAuditPub(dir string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(filepath.Join(dir, control.FileAuditPub))
	if err != nil {
		return nil, err
	}
	return audit.ParsePublicKeyPEM(data)
}

// brokenAudit is a sink whose storage failed.
type brokenAudit struct{}

func (brokenAudit) Emit(context.Context, audit.Event) error { return errors.New("disk full") }
func (brokenAudit) Ready() error                            { return errors.New("disk full") }

// TestFailsClosedWithoutAudit: while the audit trail cannot record, the
// server refuses every change (503) and makes none; reads still work.
func TestFailsClosedWithoutAudit(t *testing.T) {
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = brokenAudit{} })
	ctx := context.Background()
	var ae *control.APIError
	if _, err := ts.operator.CreateToken(ctx, "spiffe://example.org/svc/orders", time.Minute); !errors.As(err, &ae) || ae.Status != 503 || ae.Code() != "audit_unavailable" {
		t.Fatalf("CreateToken: %v, want 503 audit_unavailable", err)
	}
	if _, err := ts.operator.CreateAPIKey(ctx, "shop", []string{"*"}, 0); !errors.As(err, &ae) || ae.Status != 503 {
		t.Fatalf("CreateAPIKey: %v, want 503", err)
	}
	keys, err := ts.operator.ListAPIKeys(ctx)
	if err != nil || len(keys) != 0 {
		t.Fatalf("ListAPIKeys: %v, %v; want a working read and no key", keys, err)
	}
}
