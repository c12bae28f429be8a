package control_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
)

const snapshotMesh = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: ["127.0.0.1:9001"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {endpoints: ["127.0.0.1:9002"]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules: [{from: [svc/catalog]}]
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: catalog-callers}
spec:
  target: catalog
  rules: [{from: [gateway/edge]}]
`

// TestSnapshotFeed: a sidecar learns its own service's policies and no
// other's; an identity that is not a proxy's, and a revoked one, are
// refused.
func TestSnapshotFeed(t *testing.T) {
	ts := startServer(t, nil)
	ctx := t.Context()
	if _, err := ts.operator.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: "mesh.yaml", Data: snapshotMesh}}}); err != nil {
		t.Fatal(err)
	}
	src := ts.source(t, "orders")
	orders := ts.client(t, nil)
	orders.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	snap, err := orders.Snapshot(ctx, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Version != 1 || !strings.Contains(snap.Documents, "name: orders-callers") || strings.Contains(snap.Documents, "catalog-callers") {
		t.Errorf("orders' snapshot at version %d:\n%s\nwant its own policy and not catalog's", snap.Version, snap.Documents)
	}

	// An operator's credential is no proxy's (the CA issues workload
	// identities only under svc/ and gateway/).
	if _, err := ts.operator.Snapshot(ctx, -1, 0); apiStatus(err) != http.StatusForbidden || apiCode(err) != "not_proxy" {
		t.Errorf("operator watching: %v, want 403 not_proxy", err)
	}
	// A revoked sidecar learns nothing more.
	if _, err := ts.operator.Revoke(ctx, control.RevokeRequest{ID: "spiffe://example.org/svc/orders"}); err != nil {
		t.Fatal(err)
	}
	if _, err := orders.Snapshot(ctx, -1, 0); apiStatus(err) != http.StatusUnauthorized || apiCode(err) != "revoked" {
		t.Errorf("revoked sidecar watching: %v, want 401 revoked", err)
	}
}

// TestApplyOversized: a request over the limit is refused with 413 and
// records nothing.
func TestApplyOversized(t *testing.T) {
	ts := startServer(t, nil)
	ctx := t.Context()
	big := strings.Repeat("# padding\n", 1<<21) // 20 MiB
	_, err := ts.operator.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: "big.yaml", Data: big}}})
	if apiStatus(err) != http.StatusRequestEntityTooLarge || apiCode(err) != "too_large" {
		t.Fatalf("oversized apply: %v, want 413 too_large", err)
	}
	h, err := ts.operator.History(ctx, 0, 0)
	if err != nil || len(h.Versions) != 0 {
		t.Errorf("history after a refused apply: %+v %v, want empty", h, err)
	}
}

// TestDeleteLastObject: deleting everything is a change like any other,
// recorded as a version whose set is empty, and proxies get that set.
func TestDeleteLastObject(t *testing.T) {
	ts := startServer(t, nil)
	ctx := t.Context()
	one := "apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [\"127.0.0.1:9001\"]}\n"
	if _, err := ts.operator.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: "one.yaml", Data: one}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := ts.operator.Delete(ctx, control.DeleteRequest{Kind: "Service", Name: "orders", BaseVersion: 1})
	if err != nil || resp.Version != 2 || len(resp.Changes) != 1 || resp.Changes[0] != "-Service/orders" {
		t.Fatalf("deleting the last object: %+v, %v; want version 2 with -Service/orders", resp, err)
	}
	src := ts.source(t, "orders")
	orders := ts.client(t, nil)
	orders.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	snap, err := orders.Snapshot(ctx, -1, 0)
	if err != nil || snap.Version != 2 || snap.Documents != "" {
		t.Fatalf("snapshot of the empty set: %+v, %v; want version 2, no documents", snap, err)
	}
	if _, err := ts.operator.Rollback(ctx, control.RollbackRequest{Version: 1}); err != nil {
		t.Fatalf("rolling back from the empty set: %v", err)
	}
}

// TestShutdownAnswersLongPolls: a stopping server answers its watchers'
// long polls at once instead of waiting them out (30 s here), so it stops
// well within its grace period and the proxies move on to another server.
func TestShutdownAnswersLongPolls(t *testing.T) {
	srv, stop := controltest.StartStoppable(t, nil)
	src := controltest.Enroll(t, srv, spiffeid.RequireFromSegments(td, "svc", "orders"))
	c, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	ctx := t.Context()
	trust, err := c.Trust(ctx, src.Current().TLSCertificate(), -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	const wait = 30 * time.Second
	polls := make(chan string, 2)
	go func() {
		_, err := c.Snapshot(ctx, 0, wait) // nothing newer will come
		polls <- "snapshot: " + errText(err)
	}()
	go func() {
		_, err := c.Trust(ctx, src.Current().TLSCertificate(), trust.Version, wait)
		polls <- "trust: " + errText(err)
	}()
	time.Sleep(300 * time.Millisecond) // both are waiting on the server
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the server took %s to stop with two long polls open", took)
	}
	for range 2 {
		select {
		case p := <-polls:
			t.Logf("%s after %s", p, time.Since(start).Round(time.Millisecond))
		case <-time.After(3 * time.Second):
			t.Fatal("a long poll was still open 3s after the server stopped")
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "answered"
	}
	return err.Error()
}
