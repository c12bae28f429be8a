package role

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

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
