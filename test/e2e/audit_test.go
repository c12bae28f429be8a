package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// auditRecord is a line of `ward audit query --json`.
type auditRecord struct {
	Seq       uint64            `json:"seq"`
	Type      string            `json:"type"`
	Actor     string            `json:"actor"`
	Subject   string            `json:"subject"`
	Decision  string            `json:"decision"`
	User      string            `json:"user"`
	App       string            `json:"app"`
	RequestID string            `json:"request_id"`
	Fields    map[string]string `json:"fields"`
}

// TestAuditTrail runs the real binaries: the server records its own events
// (the CA, API keys) in its hash-chained log; the gateway and the sidecar
// record each decision in their local logs and ship them to the server,
// where one request's gateway and sidecar records share a request id, each
// attributed to the SVID that shipped it. The log then verifies with the
// server's public key.
func TestAuditTrail(t *testing.T) {
	e := newEdgeSetup(t)
	key := e.apiKey("shop", "orders")
	admin := freeAddr(t)
	gw := e.startGateway("--admin", admin)
	e.waitReady(gw, key)
	go func() {
		for range e.seen {
		}
	}()

	_, port, _ := net.SplitHostPort(gw)
	req, _ := http.NewRequest("GET", "https://localhost:"+port+"/orders/9", nil)
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("Authorization", "Bearer "+e.jwt("alice", "orders:read", 5*time.Minute))
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqID := resp.Header.Get("X-Ward-Request-Id")
	if resp.StatusCode != 200 || reqID == "" {
		t.Fatalf("request: %d, id %q", resp.StatusCode, reqID)
	}

	var gwRec, scRec *auditRecord
	var all []auditRecord
	for deadline := time.Now().Add(15 * time.Second); gwRec == nil || scRec == nil; time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("request %s not in the server's audit log after 15s (gateway %v, sidecar %v); log holds %d records", reqID, gwRec != nil, scRec != nil, len(all))
		}
		out, err := ward(t, e.dir, "audit", "query", "--json", "--data-dir", e.data)
		if err != nil {
			t.Fatalf("audit query: %v\n%s", err, out)
		}
		all = all[:0]
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r auditRecord
			if line == "" || json.Unmarshal([]byte(line), &r) != nil {
				continue
			}
			all = append(all, r)
		}
		for i := range all {
			r := &all[i]
			if r.RequestID != reqID {
				continue
			}
			switch r.Type {
			case "gateway.request":
				gwRec = r
			case "sidecar.request":
				scRec = r
			}
		}
	}
	if gwRec.Fields["reported_by"] != "spiffe://example.org/gateway/edge1" || gwRec.User != "alice" || gwRec.App != "shop" || gwRec.Decision != "allow" {
		t.Errorf("gateway record %+v", gwRec)
	}
	if scRec.Fields["reported_by"] != "spiffe://example.org/svc/orders" || scRec.Actor != "spiffe://example.org/gateway/edge1" || scRec.User != "alice" {
		t.Errorf("sidecar record %+v", scRec)
	}
	// The gateway's metrics say what its spool wrote and shipped.
	mresp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, m := range []string{"ward_audit_records_written_total", "ward_audit_records_shipped_total", "ward_audit_shipping_lag_seconds", "ward_gateway_requests_total"} {
		if !strings.Contains(string(metrics), "\n"+m) {
			t.Errorf("gateway /metrics lacks %s", m)
		}
	}
	types := map[string]bool{}
	for _, r := range all {
		types[r.Type] = true
	}
	for _, want := range []string{"ca.enroll", "ca.token.create", "apikey.create", "ca.issue"} {
		if !types[want] {
			t.Errorf("no %s record in the server's log (types %v)", want, types)
		}
	}
	// Secrets on disk are the owner's alone: the server's audit signing
	// key and the gateway's anonymous-id key and SVID key.
	for _, f := range []string{filepath.Join(e.data, "audit-key.pem"), filepath.Join(e.dir, "edge1", "anonymous.key"), filepath.Join(e.dir, "edge1", "key.pem")} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	out, err := ward(t, e.dir, "audit", "verify", "--dir", filepath.Join(e.data, "audit"), "--key", filepath.Join(e.data, "audit-pub.pem"))
	if err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	t.Logf("verify: %s", strings.TrimSpace(out))
}

// TestAuditSurvivesServerOutage: while the server is down the gateway and
// the sidecar keep serving and recording locally; once it is back, what
// they recorded reaches its log.
func TestAuditSurvivesServerOutage(t *testing.T) {
	e := newEdgeSetup(t)
	key := e.apiKey("shop", "orders")
	gw := e.startGateway()
	e.waitReady(gw, key)
	go func() {
		for range e.seen {
		}
	}()
	_, port, _ := net.SplitHostPort(gw)
	jwt := e.jwt("alice", "orders:read", 5*time.Minute)
	call := func() string {
		req, _ := http.NewRequest("GET", "https://localhost:"+port+"/orders/1", nil)
		req.Header.Set("X-Api-Key", key)
		req.Header.Set("Authorization", "Bearer "+jwt)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Ward-Request-Id")
	}
	e.srv.stop()
	var ids []string
	for range 5 {
		ids = append(ids, call())
	}
	time.Sleep(2 * time.Second) // shipping attempts fail meanwhile
	e.srv.start()
	want := map[string]int{}
	for _, id := range ids {
		want[id] = 0
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		out, err := ward(t, e.dir, "audit", "query", "--json", "--data-dir", e.data)
		if err != nil {
			t.Fatalf("audit query: %v\n%s", err, out)
		}
		for id := range want {
			want[id] = 0
		}
		for _, line := range strings.Split(out, "\n") {
			var r auditRecord
			if json.Unmarshal([]byte(line), &r) != nil {
				continue
			}
			if _, ok := want[r.RequestID]; ok && (r.Type == "gateway.request" || r.Type == "sidecar.request") {
				want[r.RequestID]++
			}
		}
		complete := true
		for _, n := range want {
			complete = complete && n == 2
		}
		if complete {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("records per request id after the outage: %v, want 2 each (gateway and sidecar)", want)
		}
	}
}

// TestAuditDocReplicasWalkthrough runs the "Try it: two replicas and a
// restart" block of docs/audit.md as written (issue 12 finding 2): two
// sidecar processes of one service with their own data directories, and
// one replaced by a sidecar with a fresh data directory, ship to one
// server, and every record of each spool is in the server's log, once,
// at its place in its log.
func TestAuditDocReplicasWalkthrough(t *testing.T) {
	need(t, "bash", "curl")
	block := docBlock(t, "docs/audit.md", "## Try it: two replicas and a restart")
	dir := t.TempDir()
	text := runWalkthrough(t, dir, block)
	if strings.Contains(text, "not all shipped") {
		t.Error("the walk-through waited in vain for the server to have every record")
	}
	logs := map[string]bool{}
	for _, spool := range []string{"orders-1", "orders-2", "orders-3"} {
		raw, err := os.ReadFile(filepath.Join(dir, spool, "audit", "log-id"))
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimSpace(string(raw))
		logs[id] = true
		local := queryRecords(t, "--dir", filepath.Join(dir, spool, "audit"))
		server := map[string]int{}
		for _, r := range queryRecords(t, "--data-dir", filepath.Join(dir, "ward-data")) {
			if r.Fields["reported_log"] == id {
				server[r.Fields["reported_seq"]]++
				if r.Fields["reported_by"] != "spiffe://example.org/svc/orders" {
					t.Errorf("%s: record reported by %q", spool, r.Fields["reported_by"])
				}
			}
		}
		handshakes := 0
		for _, r := range local {
			if n := server[strconv.FormatUint(r.Seq, 10)]; n != 1 {
				t.Errorf("%s (log %s): its record %d (%s) is in the server's log %d times, want once", spool, id, r.Seq, r.Type, n)
			}
			if r.Type == "sidecar.handshake" {
				handshakes++
			}
		}
		if len(server) != len(local) || handshakes == 0 {
			t.Errorf("%s: %d records in its spool (%d handshakes), %d in the server's log", spool, len(local), handshakes, len(server))
		}
		if !strings.Contains(text, id) {
			t.Errorf("the walk-through's output does not show log id %s", id)
		}
	}
	if len(logs) != 3 {
		t.Errorf("log ids %v, want three distinct ones", logs)
	}
}

// queryRecords runs `ward audit query --json` with args.
func queryRecords(t *testing.T, args ...string) []auditRecord {
	t.Helper()
	out, err := exec.Command(wardBin, append([]string{"audit", "query", "--json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("audit query %v: %v", args, err)
	}
	var recs []auditRecord
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r auditRecord
		if line != "" && json.Unmarshal([]byte(line), &r) == nil {
			recs = append(recs, r)
		}
	}
	return recs
}
