package control_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// metricValue reads one unlabelled sample from the server's /metrics.
func metricValue(t *testing.T, ts *testServer, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ts.PublicAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestControlPlaneEventsFsyncedBeforeAnswer: the server's own audit log
// fsyncs a control-plane event before the server answers (SyncAlways),
// unlike a proxy's spool, which syncs request records in batches. Every
// refusal below must have been fsynced by the time its answer arrives.
func TestControlPlaneEventsFsyncedBeforeAnswer(t *testing.T) {
	ts := startServer(t, nil)
	for i := range 5 {
		written := metricValue(t, ts, "ward_audit_records_written_total")
		syncs := metricValue(t, ts, "ward_audit_fsync_seconds_count")
		if _, _, err := ts.anon.Enroll(context.Background(), "wjt1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", []byte("x")); err == nil {
			t.Fatal("unknown token enrolled")
		}
		w2 := metricValue(t, ts, "ward_audit_records_written_total")
		s2 := metricValue(t, ts, "ward_audit_fsync_seconds_count")
		if w2 <= written || s2 <= syncs {
			t.Fatalf("refusal %d answered with records written %v -> %v and fsyncs %v -> %v: the control-plane event was not fsynced before the answer",
				i, written, w2, syncs, s2)
		}
	}
}
