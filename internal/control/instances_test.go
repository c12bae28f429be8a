package control_test

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/resource"
)

const meshSet = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {}
---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {}
---
apiVersion: ward/v1
kind: Service
metadata: {name: billing}
spec: {}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders}
spec: {target: orders, rules: [{from: [svc/catalog]}]}
`

// startInstances runs a server with a short instance TTL, recording its
// events, holding meshSet.
func startInstances(t *testing.T, ttl time.Duration) (*testServer, *audit.Recorder) {
	t.Helper()
	rec := &audit.Recorder{}
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = rec; c.InstanceTTL = ttl })
	if _, err := ts.operator.Apply(t.Context(), files(meshSet)); err != nil {
		t.Fatal(err)
	}
	return ts, rec
}

func eventsOf(rec *audit.Recorder, typ string) []audit.Event {
	var out []audit.Event
	for _, e := range rec.Events() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func liveAddresses(t *testing.T, ts *testServer, service string) []string {
	t.Helper()
	list, err := ts.operator.Instances(t.Context(), service)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range list {
		out = append(out, in.Address)
	}
	return out
}

// endpointsIn returns the endpoints of service in a snapshot's documents.
func endpointsIn(t *testing.T, snap control.SnapshotResponse, service string) []string {
	t.Helper()
	objs, err := resource.ParseSet("snapshot", []byte(snap.Documents))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if s, ok := o.Spec.(*resource.ServiceSpec); ok && o.Metadata.Name == service {
			return s.Endpoints
		}
	}
	return nil
}

func TestRegisterRenewDeregister(t *testing.T) {
	ts, rec := startInstances(t, 3*time.Second)
	ctx := t.Context()
	orders := ts.svcClient(t, "orders")
	in, err := orders.RegisterInstance(ctx, control.InstanceRegistration{Service: "orders", Address: "127.0.0.1:9443", Labels: map[string]string{"version": "v2", "zone": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if in.ID == "" || in.Address != "127.0.0.1:9443" || in.TTL != "3s" || in.Serial == "" || !strings.HasSuffix(in.SPIFFEID, "/svc/orders") {
		t.Errorf("registered %+v", in)
	}
	// An unspecified host is the caller's own address.
	in2, err := orders.RegisterInstance(ctx, control.InstanceRegistration{Service: "orders", Address: "0.0.0.0:9444"})
	if err != nil || in2.Address != "127.0.0.1:9444" {
		t.Fatalf("0.0.0.0:9444 registered as %+v, %v", in2, err)
	}
	if got := liveAddresses(t, ts, "orders"); !slices.Equal(got, []string{"127.0.0.1:9443", "127.0.0.1:9444"}) {
		t.Fatalf("live set %v", got)
	}
	if n := len(eventsOf(rec, "instance.register")); n != 2 {
		t.Errorf("%d instance.register records, want 2", n)
	}

	// Renewals keep one alive past its TTL; the other expires.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := orders.RenewInstance(ctx, in.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := liveAddresses(t, ts, "orders"); !slices.Equal(got, []string{"127.0.0.1:9443"}) {
		t.Fatalf("after 6s with one instance renewing (TTL 3s): %v", got)
	}
	exp := eventsOf(rec, "instance.expire")
	if len(exp) != 1 || exp[0].Subject != in2.ID {
		t.Errorf("expiry records %+v, want one for %s", exp, in2.ID)
	}
	if _, err := orders.RenewInstance(ctx, in2.ID); apiCode(err) != control.CodeInstanceGone {
		t.Errorf("renewing an expired instance: %v, want %s", err, control.CodeInstanceGone)
	}

	// Only the registering identity renews or removes an instance.
	catalog := ts.svcClient(t, "catalog")
	if _, err := catalog.RenewInstance(ctx, in.ID); apiCode(err) != control.CodeInstanceGone {
		t.Errorf("catalog renewing orders' instance: %v", err)
	}
	if err := catalog.DeregisterInstance(ctx, in.ID); apiCode(err) != control.CodeInstanceGone {
		t.Errorf("catalog removing orders' instance: %v", err)
	}
	if err := orders.DeregisterInstance(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	if got := liveAddresses(t, ts, "orders"); len(got) != 0 {
		t.Errorf("after deregistration: %v", got)
	}
	if n := len(eventsOf(rec, "instance.deregister")); n != 1 {
		t.Errorf("%d instance.deregister records, want 1", n)
	}
}

func TestRegistrationRefused(t *testing.T) {
	ts, rec := startInstances(t, 0)
	ctx := t.Context()
	catalog := ts.svcClient(t, "catalog")
	for _, tt := range []struct {
		name string
		reg  control.InstanceRegistration
		code string
	}{
		{"impostor", control.InstanceRegistration{Service: "orders", Address: "127.0.0.1:9443"}, "not_your_service"},
		{"not its address", control.InstanceRegistration{Service: "catalog", Address: "10.9.8.7:443"}, "address_not_caller"},
		{"no port", control.InstanceRegistration{Service: "catalog", Address: "127.0.0.1"}, "bad_address"},
		{"port 0", control.InstanceRegistration{Service: "catalog", Address: "127.0.0.1:0"}, "bad_address"},
		{"port too big", control.InstanceRegistration{Service: "catalog", Address: "127.0.0.1:70000"}, "bad_address"},
		{"host name", control.InstanceRegistration{Service: "catalog", Address: "localhost:9443"}, "bad_address"},
		{"zone", control.InstanceRegistration{Service: "catalog", Address: "[fe80::1%eth0]:9443"}, "bad_address"},
		{"bad label key", control.InstanceRegistration{Service: "catalog", Address: "127.0.0.1:9443", Labels: map[string]string{"-x": "1"}}, "bad_labels"},
		{"label with space", control.InstanceRegistration{Service: "catalog", Address: "127.0.0.1:9443", Labels: map[string]string{"zone": "a b"}}, "bad_labels"},
		{"too many labels", control.InstanceRegistration{Service: "catalog", Address: "127.0.0.1:9443", Labels: map[string]string{"a": "1", "b": "1", "c": "1", "d": "1", "e": "1", "f": "1", "g": "1", "h": "1", "i": "1"}}, "bad_labels"},
	} {
		if _, err := catalog.RegisterInstance(ctx, tt.reg); apiCode(err) != tt.code {
			t.Errorf("%s: %v, want %s", tt.name, err, tt.code)
		}
	}
	// A gateway is no service's instance.
	if _, err := ts.gatewayClient(t, "edge").RegisterInstance(ctx, control.InstanceRegistration{Service: "edge", Address: "127.0.0.1:1"}); apiCode(err) != "not_sidecar" {
		t.Errorf("a gateway registering: %v, want not_sidecar", err)
	}
	if got := liveAddresses(t, ts, ""); len(got) != 0 {
		t.Errorf("refused registrations stored %v", got)
	}
	refused := eventsOf(rec, "instance.refused")
	if len(refused) != 11 {
		t.Fatalf("%d instance.refused records, want 11", len(refused))
	}
	if e := refused[0]; e.Decision != "deny" || e.Reason != "not_your_service" || !strings.HasSuffix(e.Actor, "/svc/catalog") || e.Service != "orders" {
		t.Errorf("the impostor's record: %+v", e)
	}
	// Operators only may list.
	if _, err := catalog.Instances(ctx, ""); err == nil {
		t.Error("a sidecar listed the instances")
	}
}

func TestRevocationRemovesInstances(t *testing.T) {
	ts, rec := startInstances(t, time.Minute)
	ctx := t.Context()
	src := ts.source(t, "orders")
	orders := ts.client(t, nil)
	orders.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	in, err := orders.RegisterInstance(ctx, control.InstanceRegistration{Service: "orders", Address: "127.0.0.1:9443"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.operator.Revoke(ctx, control.RevokeRequest{Serial: in.Serial, Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	if got := liveAddresses(t, ts, "orders"); len(got) != 0 {
		t.Errorf("a revoked instance is still live: %v", got)
	}
	if ev := eventsOf(rec, "instance.revoked"); len(ev) != 1 || ev[0].Subject != in.ID {
		t.Errorf("instance.revoked records: %+v", ev)
	}
}

// TestSnapshotCarriesReachableInstances: a sidecar's snapshot lists the
// registered instances of the services it may call, its long poll wakes
// on their changes within a second, and not on others'.
func TestSnapshotCarriesReachableInstances(t *testing.T) {
	ts, _ := startInstances(t, time.Minute)
	ctx := t.Context()
	catalog := ts.svcClient(t, "catalog")
	first, err := catalog.Snapshot(ctx, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	orders := ts.svcClient(t, "orders")
	billing := ts.svcClient(t, "billing")

	// billing (which catalog may not call) registers: catalog's poll
	// does not answer.
	if _, err := billing.RegisterInstance(ctx, control.InstanceRegistration{Service: "billing", Address: "127.0.0.1:7000"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	same, err := catalog.Snapshot(ctx, first.Next(), 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < time.Second {
		t.Errorf("catalog woke for billing's instance after %v", time.Since(start))
	}
	if got := endpointsIn(t, same, "billing"); len(got) != 0 {
		t.Errorf("catalog learned billing's instances: %v", got)
	}

	// orders (which catalog may call) registers: the poll answers with it.
	type result struct {
		snap control.SnapshotResponse
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	go func() {
		s, err := catalog.Snapshot(context.WithoutCancel(ctx), first.Next(), 10*time.Second)
		done <- result{s, err, time.Now()}
	}()
	time.Sleep(200 * time.Millisecond)
	registered := time.Now()
	if _, err := orders.RegisterInstance(ctx, control.InstanceRegistration{Service: "orders", Address: "127.0.0.1:7001"}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if d := r.at.Sub(registered); d > time.Second {
		t.Errorf("catalog learned of orders' instance after %v, want under 1s", d)
	}
	if got := endpointsIn(t, r.snap, "orders"); !slices.Equal(got, []string{"127.0.0.1:7001"}) {
		t.Errorf("orders' endpoints in catalog's snapshot: %v", got)
	}
	if r.snap.Next() <= first.Next() || r.snap.Version != first.Version {
		t.Errorf("cursor %d -> %d, version %d -> %d: the cursor moves, the resource version stays", first.Next(), r.snap.Next(), first.Version, r.snap.Version)
	}
	// The gateway routes to nothing here: it learns no instance.
	gw, err := ts.gatewayClient(t, "edge").Snapshot(ctx, -1, 0)
	if err != nil || strings.Contains(gw.Documents, "127.0.0.1:7001") {
		t.Errorf("the gateway's snapshot: %v\n%s", err, gw.Documents)
	}
}
