package control_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
)

// Log ids of proxies' local audit logs (random in real life).
const (
	testLog  = "0123456789abcdef0123456789abcdef"
	otherLog = "fedcba9876543210fedcba9876543210"
	thirdLog = "00112233445566778899aabbccddeeff"
)

// svcClient enrolls spiffe://example.org/svc/<name> (once per call: two
// calls are two replicas of the service) and returns a client presenting
// its SVID.
func (ts *testServer) svcClient(t *testing.T, name string) *control.Client {
	t.Helper()
	src := ts.source(t, name)
	c := ts.client(t, nil)
	c.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	return c
}

// requests returns n sidecar.request records of svc/<service>, seq from
// first, their request ids prefixed by tag.
func requests(service, tag string, first uint64, n int) []control.ShippedRecord {
	recs := make([]control.ShippedRecord, n)
	for i := range recs {
		recs[i] = control.ShippedRecord{Seq: first + uint64(i), Event: audit.Event{
			Time: time.Now(), Type: "sidecar.request", Actor: "spiffe://example.org/gateway/edge",
			Subject: "spiffe://example.org/svc/" + service, Decision: "allow", RequestID: fmt.Sprintf("%s-%d", tag, first+uint64(i)),
		}}
	}
	return recs
}

// shipped returns the records proxies shipped to the server's log, by
// request id.
func shipped(t *testing.T, ts *testServer) map[string][]audit.Record {
	t.Helper()
	got := map[string][]audit.Record{}
	_, err := audit.Query(context.Background(), filepath.Join(ts.dir, control.DirAudit), audit.Filter{}, func(r audit.Record) error {
		if r.Event.Fields["reported_by"] != "" {
			got[r.Event.RequestID] = append(got[r.Event.RequestID], r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestAuditReplicasAndRestartsAllRecorded (issue 12 finding 2): two
// replicas of one service each number their log from 1, and a sidecar
// restarted with a new data directory starts again at 1; the server keeps
// every record of each, because it deduplicates per sending log.
func TestAuditReplicasAndRestartsAllRecorded(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	const n = 20
	a, b := ts.svcClient(t, "orders"), ts.svcClient(t, "orders")
	for _, s := range []struct {
		c    *control.Client
		log  string
		tag  string
		what string
	}{
		{a, testLog, "a", "replica a"},
		{b, otherLog, "b", "replica b"},
		{a, thirdLog, "a2", "replica a restarted with a new data dir"},
	} {
		for first := uint64(1); first <= n; first += n / 2 {
			acked, err := s.c.ShipAudit(ctx, s.log, requests("orders", s.tag, first, n/2))
			if err != nil || acked != first+n/2-1 {
				t.Fatalf("%s: ShipAudit from %d = %d, %v; want %d", s.what, first, acked, err, first+n/2-1)
			}
		}
	}
	got := shipped(t, ts)
	for _, tag := range []string{"a", "b", "a2"} {
		for i := 1; i <= n; i++ {
			id := fmt.Sprintf("%s-%d", tag, i)
			if len(got[id]) != 1 {
				t.Errorf("record %s is in the server's log %d times, want once (%d records shipped in all)", id, len(got[id]), len(got))
			}
		}
	}
	// Each record says which log it came from.
	if r := got["b-3"]; len(r) == 1 && (r[0].Event.Fields["reported_log"] != otherLog || r[0].Event.Fields["reported_seq"] != "3") {
		t.Errorf("record b-3 fields %v, want reported_log %s and reported_seq 3", r[0].Event.Fields, otherLog)
	}
}

// TestAuditImpossibleSequencesRefused (issue 12 finding 2): a sequence
// number no log could hold (2^64-1, or beyond audit.MaxSeq), seq 0, a
// gap or a step back inside a batch, and a batch that does not continue
// where the acknowledged part of its log ends are refused with a 400 or
// 409 and record nothing; in particular seq 2^64-1 does not silence the
// identity: its logs ship on afterwards.
func TestAuditImpossibleSequencesRefused(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	c := ts.svcClient(t, "orders")
	if _, err := c.ShipAudit(ctx, testLog, requests("orders", "ok", 1, 3)); err != nil {
		t.Fatal(err)
	}
	withSeqs := func(seqs ...uint64) []control.ShippedRecord {
		recs := requests("orders", "bad", 1, len(seqs))
		for i := range recs {
			recs[i].Seq = seqs[i]
		}
		return recs
	}
	for _, tc := range []struct {
		name   string
		log    string
		recs   []control.ShippedRecord
		status int
	}{
		{"seq 2^64-1 on a new log", otherLog, withSeqs(math.MaxUint64), 400},
		{"seq 2^64-1 on a known log", testLog, withSeqs(math.MaxUint64), 400},
		{"seq 0", thirdLog, withSeqs(0, 1), 400},
		{"a gap in the batch", thirdLog, withSeqs(1, 2, 4), 400},
		{"a step back in the batch", thirdLog, withSeqs(1, 3, 2), 400},
		{"a gap after what was acknowledged", testLog, withSeqs(5, 6), 409},
		{"a new log not starting at 1", thirdLog, withSeqs(7, 8), 409},
		{"no log id", "", withSeqs(1), 400},
		{"a log id that is not one", "../../etc", withSeqs(1), 400},
	} {
		if _, err := c.ShipAudit(ctx, tc.log, tc.recs); apiStatus(err) != tc.status {
			t.Errorf("%s: %v, want a %d", tc.name, err, tc.status)
		}
	}
	if got := shipped(t, ts); len(got) != 3 || len(got["bad-1"]) != 0 {
		t.Errorf("refused batches recorded something: %d request ids in the log, want the 3 accepted", len(got))
	}
	// The identity is not silenced: both its logs go on.
	if acked, err := c.ShipAudit(ctx, testLog, requests("orders", "ok", 4, 2)); err != nil || acked != 5 {
		t.Errorf("after the refusals, the known log: %d, %v; want acked 5", acked, err)
	}
	if acked, err := c.ShipAudit(ctx, otherLog, requests("orders", "other", 1, 2)); err != nil || acked != 2 {
		t.Errorf("after the refusals, a new log: %d, %v; want acked 2", acked, err)
	}
	if got := shipped(t, ts); len(got) != 7 {
		t.Errorf("%d request ids in the log, want 7", len(got))
	}
	// A spool of an earlier version, whose shipped records were deleted,
	// starts a new log where it still holds records, and only there.
	upgraded := control.AuditBatch{LogID: thirdLog, From: 40, Records: requests("orders", "upgraded", 41, 2)}
	if _, err := c.ShipAuditBatch(ctx, upgraded); apiStatus(err) != 409 {
		t.Errorf("a new log from 40 starting at 41: %v, want a 409", err)
	}
	upgraded.Records = requests("orders", "upgraded", 40, 2)
	if acked, err := c.ShipAuditBatch(ctx, upgraded); err != nil || acked != 41 {
		t.Errorf("a new log from 40: %d, %v; want acked 41", acked, err)
	}
	upgraded.From, upgraded.Records = 10, requests("orders", "upgraded", 10, 1)
	if acked, err := c.ShipAuditBatch(ctx, upgraded); err != nil || acked != 41 {
		t.Errorf("From on a known log: %d, %v; want it ignored (acked 41)", acked, err)
	}
	if got := shipped(t, ts); len(got["upgraded-10"]) != 0 || len(got["upgraded-40"]) != 1 {
		t.Errorf("From on a known log recorded an old seq again, or the new log lost its first record")
	}
}

// TestAuditIngestOnlyFromProxies (issue 12 finding 4): an operator's
// certificate, admin or auditor, cannot write audit records: 403, and
// nothing is recorded.
func TestAuditIngestOnlyFromProxies(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	auditor := ts.operatorClient(t, "audrey", control.RoleAuditor)
	for name, c := range map[string]*control.Client{"admin": ts.operator, "auditor": auditor} {
		recs := requests("orders", name, 1, 2)
		if _, err := c.ShipAudit(ctx, testLog, recs); apiStatus(err) != 403 {
			t.Errorf("%s certificate: %v, want a 403", name, err)
		}
	}
	if got := shipped(t, ts); len(got) != 0 {
		t.Errorf("operators wrote %d records", len(got))
	}
}

// TestAuditIngestOnlyProxyEventTypes (issue 12 finding 4): a proxy ships
// only the events a proxy of its kind produces, about itself: a sidecar
// cannot write ca.issue, resource.apply or gateway.request records, nor
// request records of another service; the whole batch is refused.
func TestAuditIngestOnlyProxyEventTypes(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	sc := ts.svcClient(t, "orders")
	gw := ts.gatewayClient(t, "edge")
	forged := func(mod func(*audit.Event)) []control.ShippedRecord {
		recs := requests("orders", "forged", 1, 2)
		mod(&recs[1].Event)
		return recs
	}
	for name, tc := range map[string]struct {
		c    *control.Client
		recs []control.ShippedRecord
	}{
		"ca.issue from a sidecar":        {sc, forged(func(e *audit.Event) { e.Type = "ca.issue" })},
		"resource.apply from a sidecar":  {sc, forged(func(e *audit.Event) { e.Type = "resource.apply" })},
		"gateway.request from a sidecar": {sc, forged(func(e *audit.Event) { e.Type = "gateway.request" })},
		"sidecar.request from a gateway": {gw, requests("orders", "forged", 1, 1)},
		"another service's request":      {sc, forged(func(e *audit.Event) { e.Subject = "spiffe://example.org/svc/payments" })},
		"no type":                        {sc, forged(func(e *audit.Event) { e.Type = "" })},
	} {
		if _, err := tc.c.ShipAudit(ctx, testLog, tc.recs); apiStatus(err) != 400 {
			t.Errorf("%s: %v, want a 400", name, err)
		}
	}
	if got := shipped(t, ts); len(got) != 0 {
		t.Errorf("refused batches recorded %d records", len(got))
	}
	// What proxies do produce goes in.
	ok := requests("orders", "ok", 1, 1)
	ok = append(ok, control.ShippedRecord{Seq: 2, Event: audit.Event{Time: time.Now(), Type: "config.reload", Subject: "/etc/ward/orders.yaml", Decision: "allow"}})
	if acked, err := sc.ShipAudit(ctx, testLog, ok); err != nil || acked != 2 {
		t.Fatalf("a sidecar's own records: %d, %v", acked, err)
	}
}

// TestAuditIngestClampsInsaneTimes (issue 12 finding 4): a shipped
// record's time is the sender's claim; one in the future beyond the
// allowed skew, or older than the log keeps records, is recorded at the
// time the server received it, the claim kept in claimed_time, so that a
// sender cannot place records outside the range queries look at.
func TestAuditIngestClampsInsaneTimes(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	sc := ts.svcClient(t, "orders")
	recs := requests("orders", "t", 1, 4)
	sane := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	recs[0].Event.Time = sane
	recs[1].Event.Time = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	recs[2].Event.Time = time.Now().Add(24 * time.Hour)
	recs[3].Event.Time = time.Time{}
	before := time.Now().Add(-time.Second)
	if _, err := sc.ShipAudit(ctx, testLog, recs); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Add(time.Second)
	got := shipped(t, ts)
	if r := got["t-1"]; len(r) != 1 || !r[0].Event.Time.Equal(sane) || r[0].Event.Fields["claimed_time"] != "" {
		t.Errorf("a sane time was changed: %+v", r)
	}
	for _, id := range []string{"t-2", "t-3", "t-4"} {
		r := got[id]
		if len(r) != 1 {
			t.Fatalf("%s: %d records", id, len(r))
		}
		if tm := r[0].Event.Time; tm.Before(before) || tm.After(after) || r[0].Event.Fields["claimed_time"] == "" {
			t.Errorf("%s: recorded at %v with claimed_time %q; want the receive time and the claim kept", id, tm, r[0].Event.Fields["claimed_time"])
		}
	}
}

// TestAuditKeySealedAtRest (issue 12 item 11): the audit signing key is
// sealed with the key-encryption key like the CA's keys; a plaintext key
// left by an earlier version is sealed on start and still signs the same
// log, which verifies with the public key.
func TestAuditKeySealedAtRest(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(old)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dataDir, control.FileAuditKey)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, stop := controltest.StartStoppable(t, func(c *control.ServerConfig) { c.DataDir = dataDir })
	ts := &testServer{Server: srv, dir: dataDir, bundle: srv.CA.Bundle()}
	c := ts.svcClient(t, "orders")
	if _, err := c.ShipAudit(context.Background(), testLog, requests("orders", "k", 1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "PRIVATE KEY") {
		t.Fatalf("%s holds a plaintext private key:\n%.60s", keyFile, data)
	}
	if blk, _ := pem.Decode(data); blk != nil {
		if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
			t.Fatalf("%s parses as a private key", keyFile)
		}
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", keyFile, err, fi.Mode().Perm())
	}
	pub, err := readAuditPub(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !old.PublicKey.Equal(pub) {
		t.Error("the migrated key is not the one the log was signed with")
	}
	rep, err := audit.Verify(filepath.Join(dataDir, control.DirAudit), pub)
	if err != nil || !rep.OK() || rep.LastSignedSeq == 0 {
		t.Fatalf("verify: %v %s", err, rep.Summary())
	}
	// Started again, the server opens the sealed key and signs on.
	srv2, stop2 := controltest.StartStoppable(t, func(c *control.ServerConfig) { c.DataDir = dataDir })
	ts2 := &testServer{Server: srv2, dir: dataDir, bundle: srv2.CA.Bundle()}
	_ = ts2.svcClient(t, "catalog") // records ca.enroll and more
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	rep2, err := audit.Verify(filepath.Join(dataDir, control.DirAudit), pub)
	if err != nil || !rep2.OK() || rep2.LastSignedSeq <= rep.LastSignedSeq {
		t.Fatalf("verify after a restart: %v %s", err, rep2.Summary())
	}
}
