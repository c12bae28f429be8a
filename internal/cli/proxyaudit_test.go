package cli

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardsec/ward/internal/audit"
)

// TestProxyAuditFailOpen: by default a proxy's sink fails when its spool
// cannot record (the proxy then refuses the request); with
// --audit-fail-open the failure is swallowed and the request served.
func TestProxyAuditFailOpen(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, failOpen := range []bool{false, true} {
		dir := t.TempDir()
		sp, sink, err := proxyAudit(filepath.Join(dir, "audit"), filepath.Join(dir, "cursor"), 0, nil, prometheus.NewRegistry(), failOpen, log)
		if err != nil {
			t.Fatal(err)
		}
		ev := audit.Event{Type: "gateway.request", Decision: "allow"}
		if err := sink.Emit(context.Background(), ev); err != nil {
			t.Fatalf("failOpen=%v: a working spool failed: %v", failOpen, err)
		}
		if err := sp.Close(); err != nil { // from now on it cannot record
			t.Fatal(err)
		}
		err = sink.Emit(context.Background(), ev)
		switch {
		case failOpen && err != nil:
			t.Errorf("fail-open: %v, want the failure swallowed", err)
		case !failOpen && err == nil:
			t.Error("fail-closed: a record that could not be written was reported as written")
		}
	}
}

// TestAuditSyncIntervalFlag: --audit-sync-interval takes a positive Go
// duration or "always", defaults to audit.DefaultSyncInterval, and ward
// sidecar and ward gateway refuse anything else naming the flag.
func TestAuditSyncIntervalFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1s", time.Second, true}, {"250ms", 250 * time.Millisecond, true}, {"always", audit.SyncAlways, true},
		{"0", 0, false}, {"0s", 0, false}, {"-1s", 0, false}, {"soon", 0, false}, {"", 0, false}, {"ALWAYS", 0, false},
	} {
		var f syncIntervalFlag
		err := f.Set(tc.in)
		if (err == nil) != tc.ok || (tc.ok && f.duration() != tc.want) {
			t.Errorf("Set(%q) = %v, %v; want %v ok=%v", tc.in, f.duration(), err, tc.want, tc.ok)
		}
	}
	var def syncIntervalFlag
	if def.String() != "1s" || def.duration() != 0 {
		t.Errorf("the default reads %q (%v)", def.String(), def.duration())
	}
	for _, role := range []string{"sidecar", "gateway"} {
		for _, bad := range []string{"0", "-5s", "soon"} {
			_, _, err := runWard(t, role, "--audit-sync-interval", bad)
			if err == nil || !strings.Contains(err.Error(), "--audit-sync-interval") {
				t.Errorf("ward %s --audit-sync-interval %s: %v, want an error naming the flag", role, bad, err)
			}
		}
	}
}
