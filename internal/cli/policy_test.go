package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/role"
	"github.com/wardsec/ward/internal/sidecar"
	"github.com/wardsec/ward/internal/testport"
)

// flowMesh is a server, a gateway and the sidecar of service hello, run
// as roles, whose proxies ship their flows every 100ms.
type flowMesh struct {
	srv    *control.Server
	dir    string
	op     *control.Client
	edge   *gateway.Gateway
	client *http.Client
}

func startFlowMesh(t *testing.T, policy string) *flowMesh {
	t.Helper()
	srv, dir := startServer(t)
	cred, err := control.LoadCredential(filepath.Join(dir, control.FileOperator))
	if err != nil {
		t.Fatal(err)
	}
	op, err := control.NewClient(srv.URL(), srv.CA.Bundle(), cred)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "hello %s", r.URL.Path) }))
	inbound := testport.Addr(t)
	docs := fmt.Sprintf(`apiVersion: ward/v1
kind: Service
metadata: {name: hello}
spec: {endpoints: ["%s"]}
---
apiVersion: ward/v1
kind: Route
metadata: {name: hello}
spec:
  pathPrefix: /hello
  service: hello
  auth: {apiKey: none, user: anonymous}
---
%s`, inbound, policy)
	if _, err := op.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: "hello.yaml", Data: docs}}}); err != nil {
		t.Fatal(err)
	}
	workload := func(id, name string) role.Workload {
		tok, err := op.CreateToken(ctx, "spiffe://example.org/"+id, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return role.Workload{Server: srv.URL(), Bundle: srv.CA.Bundle(), Token: tok.Token, DataDir: filepath.Join(t.TempDir(), name), FlowInterval: 100 * time.Millisecond}
	}
	scUp, gwUp := make(chan struct{}), make(chan *gateway.Gateway, 1)
	sc := &role.Sidecar{
		Workload: workload("svc/hello", "sidecar"),
		Proxy:    sidecar.Config{Service: "hello", Listen: inbound, App: strings.TrimPrefix(app.URL, "http://")},
		Ready:    func(*sidecar.Sidecar) { close(scUp) },
	}
	gw := &role.Gateway{
		Workload: workload("gateway/edge", "gateway"),
		Proxy:    gateway.Config{Name: "edge", Listen: "127.0.0.1:0"},
		Edge:     role.EdgeCert{WardCA: true, Names: []string{"127.0.0.1"}},
		Ready:    func(g *gateway.Gateway) { gwUp <- g },
	}
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error { return sc.Run(gctx) })
	grp.Go(func() error { return gw.Run(gctx) })
	m := &flowMesh{srv: srv, dir: dir, op: op}
	select {
	case <-scUp:
	case <-gctx.Done():
		t.Fatalf("the sidecar failed to start: %v", grp.Wait())
	}
	select {
	case m.edge = <-gwUp:
	case <-gctx.Done():
		t.Fatalf("the gateway failed to start: %v", grp.Wait())
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.CA.Bundle().PEM())
	m.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	t.Cleanup(func() {
		m.client.CloseIdleConnections()
		cancel()
		if err := grp.Wait(); err != nil {
			t.Errorf("roles: %v", err)
		}
		app.Close()
	})
	return m
}

// call sends one request through the gateway and returns its status.
func (m *flowMesh) call(t *testing.T, method, path string) int {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+m.edge.Addr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitFlows polls the server's flows of hello since from until cond holds.
func (m *flowMesh) waitFlows(t *testing.T, from time.Time, what string, cond func(edges []flows.Record) bool) []flows.Record {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		win, err := m.op.Flows(context.Background(), control.FlowQuery{From: from, Service: "hello"})
		if err != nil {
			t.Fatal(err)
		}
		edges := win.Edges
		if cond(edges) {
			return edges
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s, %s: the flows are %+v", what, edges)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// count sums the requests the sidecar of hello counted from the gateway.
func count(edges []flows.Record, method, path, decision string) uint64 {
	return countFrom(edges, "gateway/edge", method, path, decision)
}

func countFrom(edges []flows.Record, source, method, path, decision string) uint64 {
	var n uint64
	for _, e := range edges {
		if e.Source == source && e.Method == method && e.Path == path && e.Decision == decision {
			n += e.Count
		}
	}
	return n
}

const openPolicy = `apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: hello-callers}
spec:
  target: hello
  rules:
    - from: [gateway/edge]
`

// observedTraffic is what the test sends through the gateway to hello.
var observedTraffic = []struct{ method, path string }{
	{"GET", "/hello/1"}, {"GET", "/hello/22"}, {"GET", "/hello"}, {"POST", "/hello/orders"},
}

// TestPolicySuggestFromObservedTraffic (issue 17): traffic observed by a
// sidecar becomes flows on the server; `ward policy suggest` turns the
// allowed part into a least-privilege AccessPolicy; applied in dry-run
// mode it produces no would-deny for that traffic and would deny a call
// outside it; enforced, it lets the traffic through and refuses the call
// outside it.
func TestPolicySuggestFromObservedTraffic(t *testing.T) {
	m := startFlowMesh(t, openPolicy)
	start := time.Now().Add(-time.Second)
	for _, c := range observedTraffic {
		if got := m.call(t, c.method, c.path); got != http.StatusOK {
			t.Fatalf("%s %s: %d under the open policy", c.method, c.path, got)
		}
	}
	edges := m.waitFlows(t, start, "the observed traffic", func(e []flows.Record) bool {
		return count(e, "GET", "/hello/{id}", flows.Allow) == 2 && count(e, "GET", "/hello", flows.Allow) == 1 && count(e, "POST", "/hello/orders", flows.Allow) == 1
	})
	for _, e := range edges {
		if e.Source != "gateway/edge" {
			continue
		}
		if e.Policy != "hello-callers" || e.Class != 2 || e.Reason != "allowed" {
			t.Errorf("edge %+v: want policy hello-callers, reason allowed, class 2", e)
		}
	}

	out, errOut, err := ward(t, "--data-dir", m.dir, "policy", "suggest", "--since", "1h", "--service", "hello")
	if err != nil {
		t.Fatalf("policy suggest: %v\n%s", err, errOut)
	}
	for _, want := range []string{"kind: AccessPolicy", "name: hello-callers", "target: hello", "mode: enforce", "gateway/edge", "/hello/*", "POST"} {
		if !strings.Contains(out, want) {
			t.Errorf("the suggestion lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"replay: the suggestion admits all 3 observed edges", "dry run against version", "+++ AccessPolicy/hello-callers", "-        - '*'"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("policy suggest's standard error lacks %q:\n%s", want, errOut)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Applied in dry-run mode: the observed traffic is allowed, a call
	// outside it would be denied (and goes through: a dry run).
	file := filepath.Join(t.TempDir(), "suggested.yaml")
	if err := os.WriteFile(file, []byte(strings.Replace(out, "mode: enforce", "mode: dry-run", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := ward(t, "--data-dir", m.dir, "apply", "-f", file); err != nil {
		t.Fatalf("apply the suggestion in dry-run mode: %v\n%s", err, errOut)
	}
	applied := time.Now()
	m.waitFlows(t, applied, "DELETE /hello/1 would be denied once the dry run is in force", func(e []flows.Record) bool {
		if got := m.call(t, "DELETE", "/hello/1"); got != http.StatusOK {
			t.Fatalf("DELETE /hello/1 under a dry-run policy: %d, want 200", got)
		}
		return count(e, "DELETE", "/hello/{id}", flows.WouldDeny) > 0
	})
	active := time.Now()
	for _, c := range observedTraffic {
		if got := m.call(t, c.method, c.path); got != http.StatusOK {
			t.Fatalf("%s %s: %d under the dry-run suggestion", c.method, c.path, got)
		}
	}
	edges = m.waitFlows(t, active, "the observed traffic again", func(e []flows.Record) bool {
		return count(e, "GET", "/hello/{id}", flows.Allow) >= 2 && count(e, "GET", "/hello", flows.Allow) >= 1 && count(e, "POST", "/hello/orders", flows.Allow) >= 1
	})
	for _, e := range edges {
		if e.Source == "gateway/edge" && e.Method != "DELETE" && e.Decision != flows.Allow {
			t.Errorf("observed traffic under the dry-run suggestion: %+v, want allow", e)
		}
	}

	// Enforced: the same traffic passes, the call outside it is refused.
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := ward(t, "--data-dir", m.dir, "apply", "-f", file); err != nil {
		t.Fatalf("apply the suggestion: %v\n%s", err, errOut)
	}
	deadline := time.Now().Add(20 * time.Second)
	for m.call(t, "DELETE", "/hello/1") != http.StatusForbidden {
		if time.Now().After(deadline) {
			t.Fatal("DELETE /hello/1 is not refused 20s after the suggestion was enforced")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range observedTraffic {
		if got := m.call(t, c.method, c.path); got != http.StatusOK {
			t.Errorf("%s %s: %d under the enforced suggestion, want 200", c.method, c.path, got)
		}
	}
}
