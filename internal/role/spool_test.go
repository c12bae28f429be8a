package role

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
)

// TestSpoolReadyFailsWhenLogCannotRecord (issue 19 item 5): Ready is what
// lets a proxy fail closed before it forwards a request (the gateway
// records after the response), so it must report a spool whose disk fails
// and a spool that is closed, and nil only while the spool records.
//
// The disk failure is real: the next segment file is a symlink to
// /dev/full, so when the spool's segment fills up and the log rotates,
// its writes fail with ENOSPC.
func TestSpoolReadyFailsWhenLogCannotRecord(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("this test needs /dev/full: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := filepath.Join(t.TempDir(), "audit")
	sp, sink, err := proxyAudit(dir, filepath.Join(t.TempDir(), "cursor"), 0, nil, prometheus.NewRegistry(), false, log)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if err := audit.Ready(sink); err != nil {
		t.Fatalf("a fresh spool is not ready: %v", err)
	}
	if err := os.Symlink("/dev/full", filepath.Join(dir, "seg-0000000000000002.wal")); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 900<<10)
	ctx := context.Background()
	// Fill the first segment (16 MiB) while the disk works.
	for i := 0; i < 19; i++ {
		ev := audit.Event{Type: "sidecar.request", Decision: "allow", Fields: map[string]string{"pad": pad}}
		if err := sink.Emit(ctx, ev); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if err := audit.Ready(sink); err != nil {
			t.Fatalf("record %d: a working spool is not ready: %v", i, err)
		}
	}
	// The next record needs a new segment, on a full disk.
	if err := sink.Emit(ctx, audit.Event{Type: "sidecar.request", Decision: "allow"}); err == nil {
		t.Fatal("a record was acknowledged on a full disk")
	}
	if err := audit.Ready(sink); err == nil {
		t.Fatal("Ready is nil while the spool's disk fails: a proxy would forward requests it cannot record")
	}
	if err := sink.Emit(ctx, audit.Event{Type: "sidecar.request", Decision: "allow"}); err == nil {
		t.Fatal("a record was acknowledged after the disk failed")
	}

	// A closed spool is not ready either.
	dir2 := filepath.Join(t.TempDir(), "audit")
	sp2, sink2, err := proxyAudit(dir2, filepath.Join(t.TempDir(), "cursor"), 0, nil, prometheus.NewRegistry(), false, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := audit.Ready(sink2); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Ready after Close = %v, want audit.ErrClosed", err)
	}
}

// TestSpoolReplicasAndRestartShipEveryRecord (issue 12 finding 2): two
// replicas of one service, each with its own spool numbered from 1, and
// one of them restarted with a new data directory, ship to one real
// server; every record of each arrives there once.
func TestSpoolReplicasAndRestartShipEveryRecord(t *testing.T) {
	srv := controltest.Start(t, nil)
	id := spiffeid.RequireFromString("spiffe://example.org/svc/orders")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const n = 30
	ship := func(tag string) {
		t.Helper()
		src := controltest.Enroll(t, srv, id)
		client, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
		if err != nil {
			t.Fatal(err)
		}
		client.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
		dir := t.TempDir()
		sp, err := openSpool(filepath.Join(dir, "audit"), filepath.Join(dir, "cursor"), 0, client, prometheus.NewRegistry(), log)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sp.Run(ctx) }()
		defer func() { cancel(); <-done }()
		for i := 1; i <= n; i++ {
			ev := audit.Event{Type: "sidecar.request", Subject: id.String(), Decision: "allow", RequestID: fmt.Sprintf("%s-%d", tag, i)}
			if err := sp.Emit(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		waitUntil(t, tag+"'s records acknowledged", func() bool { return sp.shipped.Load() == n })
	}
	ship("replica-a")
	ship("replica-b")
	ship("replica-a-new-data-dir")

	count := map[string]int{}
	_, err := audit.Query(context.Background(), filepath.Join(srv.DataDir(), control.DirAudit), audit.Filter{Type: "sidecar.request"}, func(r audit.Record) error {
		count[r.Event.RequestID]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"replica-a", "replica-b", "replica-a-new-data-dir"} {
		for i := 1; i <= n; i++ {
			if id := fmt.Sprintf("%s-%d", tag, i); count[id] != 1 {
				t.Errorf("%s is in the server's log %d times, want once", id, count[id])
			}
		}
	}
}

// waitUntil polls cond until it holds or 20 seconds pass.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSpoolKeepsUnshippedPastRetention (issue 12 item 11): a proxy's
// records older than the spool's 7 days that the server has not
// acknowledged stay on disk, and the metric says so.
func TestSpoolKeepsUnshippedPastRetention(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := filepath.Join(t.TempDir(), "audit")
	reg := prometheus.NewRegistry()
	sp, err := openSpool(dir, filepath.Join(t.TempDir(), "cursor"), 0, nil, reg, log) // no server: nothing ships
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	pad := strings.Repeat("x", 900<<10)
	old := time.Now().Add(-8 * 24 * time.Hour)
	for i := 0; i < 20; i++ { // 16 MiB of old records: a sealed segment, then retention runs
		ev := audit.Event{Time: old, Type: "sidecar.request", Decision: "allow", Fields: map[string]string{"pad": pad}}
		if err := sp.Emit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	gauge := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "ward_audit_unshipped_past_retention_records" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return 0
	}
	seg1 := filepath.Join(dir, "seg-0000000000000001.wal")
	waitUntil(t, "retention to run", func() bool {
		_, err := os.Stat(seg1)
		return gauge() > 0 || err != nil
	})
	if _, err := os.Stat(seg1); err != nil {
		t.Fatalf("unshipped records deleted after 7 days: %v", err)
	}
	if g := gauge(); g < 19 {
		t.Errorf("ward_audit_unshipped_past_retention_records = %v, want the 19 records of the sealed segment", g)
	}
}

// TestSpoolFromEarlierVersionShipsWhatItHolds: a spool written before
// log ids (no log-id file, a bare-number cursor) whose oldest, shipped
// segment retention already deleted gets a log id and ships every record
// it still holds, starting where it starts.
func TestSpoolFromEarlierVersionShipsWhatItHolds(t *testing.T) {
	srv := controltest.Start(t, nil)
	id := spiffeid.RequireFromString("spiffe://example.org/svc/orders")
	dir := t.TempDir()
	spoolDir, cursor := filepath.Join(dir, "audit"), filepath.Join(dir, "cursor")
	old, err := audit.Open(spoolDir, audit.Options{MaxSegmentBytes: 2048, NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 60; i++ {
		ev := audit.Event{Type: "sidecar.request", Subject: id.String(), Decision: "allow", RequestID: fmt.Sprintf("old-%d", i)}
		if _, err := old.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	// What the earlier version's retention did after shipping: the first
	// segment is gone; its cursor was a bare number.
	for _, p := range []string{"seg-0000000000000001.wal", "seg-0000000000000001.idx"} {
		if err := os.Remove(filepath.Join(spoolDir, p)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(cursor, []byte("60\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var held []string
	if _, err := audit.Query(context.Background(), spoolDir, audit.Filter{}, func(r audit.Record) error {
		held = append(held, r.Event.RequestID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(held) == 0 || held[0] == "old-1" {
		t.Fatalf("the test's spool holds %v, want a log that starts after seq 1", held)
	}

	src := controltest.Enroll(t, srv, id)
	client, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
	if err != nil {
		t.Fatal(err)
	}
	client.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	sp, err := openSpool(spoolDir, cursor, 0, client, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, "the spool's records acknowledged", func() bool { return sp.shipped.Load() == 60 })
	count := map[string]int{}
	if _, err := audit.Query(context.Background(), filepath.Join(srv.DataDir(), control.DirAudit), audit.Filter{Type: "sidecar.request"}, func(r audit.Record) error {
		count[r.Event.RequestID]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, rid := range held {
		if count[rid] != 1 {
			t.Errorf("%s is in the server's log %d times, want once", rid, count[rid])
		}
	}
}

// TestSpoolReshipsWhenServerIsBehind: when the server's position in a
// log is behind what it acknowledged (its store restored from a backup),
// the spool ships again from its start instead of being refused forever,
// and every record, old and new, is in the server's log.
func TestSpoolReshipsWhenServerIsBehind(t *testing.T) {
	srv := controltest.Start(t, nil)
	id := spiffeid.RequireFromString("spiffe://example.org/svc/orders")
	src := controltest.Enroll(t, srv, id)
	client, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
	if err != nil {
		t.Fatal(err)
	}
	client.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	dir := t.TempDir()
	sp, err := openSpool(filepath.Join(dir, "audit"), filepath.Join(dir, "cursor"), 0, client, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	defer func() { cancel(); <-done }()
	emit := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			ev := audit.Event{Type: "sidecar.request", Subject: id.String(), Decision: "allow", RequestID: fmt.Sprintf("r-%d", i)}
			if err := sp.Emit(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	emit(1, 30)
	waitUntil(t, "records 1-30 acknowledged", func() bool { return sp.shipped.Load() == 30 })
	// The server forgets where this log was: back to seq 10.
	if err := srv.Store().SetMeta(context.Background(), "audit.shipped."+id.String()+"#"+sp.logID, "10"); err != nil {
		t.Fatal(err)
	}
	emit(31, 40)
	waitUntil(t, "records 31-40 acknowledged", func() bool { return sp.shipped.Load() == 40 })
	count := map[string]int{}
	if _, err := audit.Query(context.Background(), filepath.Join(srv.DataDir(), control.DirAudit), audit.Filter{Type: "sidecar.request"}, func(r audit.Record) error {
		count[r.Event.RequestID]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 40; i++ {
		if count[fmt.Sprintf("r-%d", i)] == 0 {
			t.Errorf("r-%d is not in the server's log", i)
		}
	}
}
