package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/gateway"
)

// chromium returns the path of the headless browser, installed by
// scripts/test's setup (Debian's chromium). Without it the test fails in
// CI and is skipped elsewhere, saying so.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: run scripts/test, which installs Debian's chromium, or apt-get install chromium")
	return ""
}

// browserContext starts a headless Chromium for the test. The server's
// certificate is issued by Ward's own CA, which this throwaway browser
// profile does not know, so certificate errors are ignored: the TLS of
// the server is tested elsewhere, not here.
func browserContext(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, for ctx's lifetime
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// steps runs actions within 45 seconds; on failure it saves a screenshot
// of the page as it was and fails the test.
func steps(t *testing.T, ctx context.Context, shots, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = chromedp.Do(fctx, screenshot(t, shots, "failed-"+strings.ReplaceAll(what, " ", "-")))
		t.Fatalf("in the browser, %s: %v (screenshots in %s)", what, err, shots)
	}
}

// artifacts is where screenshots go: $WARD_ARTIFACTS/<test> when set
// (CI keeps it), else the test's temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if base := os.Getenv("WARD_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func screenshot(t *testing.T, dir, name string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		buf, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return chromedp.Void{}, err
		}
		path := filepath.Join(dir, name+".png")
		t.Logf("screenshot %s", path)
		return chromedp.Void{}, os.WriteFile(path, buf, 0o644)
	}
}

// waitText waits until the visible text of the element sel (a CSS
// selector) contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		for {
			got, err := chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			if strings.Contains(got, want) {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("%s never showed %q (last %q)", sel, want, got)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// js runs an expression for its effect.
func js(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[any](expr)(ctx, tg)
		return chromedp.Void{}, err
	}
}

const getOnlyPolicy = `apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: hello-callers}
spec:
  target: hello
  rules:
    - from: [gateway/edge]
      methods: [GET]
      paths: ["/hello/*"]
`

// TestDashboardInBrowser (issue 17): in headless Chromium, an operator
// opens the link of `ward dashboard login`, sees the services and edges
// the mesh served, opens the denied edge and reads its reason, pastes the
// refused request's id, and accepts a suggestion as a dry run.
func TestDashboardInBrowser(t *testing.T) {
	ctx := browserContext(t)
	shots := artifacts(t)
	m := startFlowMesh(t, getOnlyPolicy)
	start := time.Now().Add(-time.Second)
	for i := range 3 {
		if got := m.call(t, "GET", fmt.Sprintf("/hello/%d", i)); got != http.StatusOK {
			t.Fatalf("GET /hello/%d: %d", i, got)
		}
	}
	req, _ := http.NewRequest("POST", "https://"+m.edge.Addr()+"/hello/orders", nil)
	resp, err := m.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deniedID := resp.Header.Get(gateway.HeaderRequestID)
	if resp.StatusCode != http.StatusForbidden || deniedID == "" {
		t.Fatalf("POST /hello/orders: %d, request id %q; want 403 with an id", resp.StatusCode, deniedID)
	}
	m.waitFlows(t, start, "the traffic", func(e []flows.Record) bool {
		return count(e, "GET", "/hello/{id}", flows.Allow) == 3 && countFrom(e, "public", "POST", "/hello/orders", flows.Deny) == 1
	})
	waitAudit(t, m, deniedID)

	link, errOut, err := ward(t, "--data-dir", m.dir, "dashboard", "login")
	if err != nil {
		t.Fatalf("dashboard login: %v\n%s", err, errOut)
	}
	link = strings.TrimSpace(link)

	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	steps(t, ctx, shots, "the graph",
		chromedp.Navigate(link),
		chromedp.WaitVisible(css(`body[data-ready="1"]`)),
		chromedp.WaitVisible(css(`#edges tbody tr`)),
		waitText("#who", "admin"),
		waitText("#edges", "gateway/edge"),
		waitText("#edges", "public"),
		waitText("#edges", "hello"),
		screenshot(t, shots, "1-graph"))
	steps(t, ctx, shots, "the denied edge",
		chromedp.SetValue(css("#graph-mark"), "denied"),
		js(`document.getElementById("graph-mark").dispatchEvent(new Event("change"))`),
		waitText("#edges tbody", "denied"),
		chromedp.Click(css(`#edges tbody tr`)),
		waitText("#edge-flows", "no_rule_matches"),
		waitText("#edge-flows", "POST"),
		waitText("#edge-records", deniedID),
		screenshot(t, shots, "2-denied-edge"))
	steps(t, ctx, shots, "a pasted request id",
		js(`location.hash = "why"`),
		chromedp.WaitVisible(css(`#why-id`)),
		chromedp.SendKeys(css("#why-id"), deniedID),
		chromedp.Click(css("#why-form button")),
		waitText("#why-result", "deny (no_rule_matches)"),
		waitText("#why-result", "hello-callers"),
		screenshot(t, shots, "3-why"))
	steps(t, ctx, shots, "a suggestion accepted as a dry run",
		js(`location.hash = "suggest"`),
		chromedp.WaitVisible(css(`#suggest-service`)),
		chromedp.SendKeys(css("#suggest-service"), "hello"),
		chromedp.Click(css("#suggest-form button")),
		waitText("#suggest-yaml", "kind: AccessPolicy"),
		waitText("#suggest-summary", "would deny 0"),
		chromedp.Click(css("#suggest-dryrun")),
		waitText("#suggest-diff", "Dry run"),
		screenshot(t, shots, "4-suggestion"))
	yaml, err := chromedp.Run(ctx, chromedp.Text(css("#suggest-yaml")))
	if err != nil {
		t.Fatal(err)
	}
	diff, err := chromedp.Run(ctx, chromedp.Text(css("#suggest-diff")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(yaml, "/hello/*") || !strings.Contains(yaml, "gateway/edge") {
		t.Errorf("the suggestion:\n%s", yaml)
	}
	if !strings.Contains(diff, "no change") && !strings.Contains(diff, "AccessPolicy/hello-callers") {
		t.Errorf("the dry run:\n%s", diff)
	}
	cur, err := m.op.Resources(context.Background(), "AccessPolicy", "hello-callers")
	if err != nil || !strings.Contains(cur.Documents, "/hello/*") {
		t.Errorf("the dry run changed the policy: %v\n%s", err, cur.Documents)
	}
}

// waitAudit waits until the server's audit log holds request id.
func waitAudit(t *testing.T, m *flowMesh, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		found := false
		_, err := audit.Query(context.Background(), filepath.Join(m.dir, control.DirAudit), audit.Filter{}, func(r audit.Record) error {
			found = found || r.Event.RequestID == id
			return nil
		})
		if err == nil && found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's audit log lacks request %s after 20s (%v)", id, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDashboardLargeGraph (issue 17): a synthetic graph of 500 services
// and 5,000 edges renders in the browser and stays interactive; the test
// reports the time to first paint, to the drawn graph, and of a filter.
func TestDashboardLargeGraph(t *testing.T) {
	ctx := browserContext(t)
	shots := artifacts(t)
	srv, dir := startServer(t)
	gw := controltest.Enroll(t, srv, spiffeid.RequireFromString("spiffe://example.org/gateway/edge"))
	c, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.FollowCredential(func() *tls.Certificate { return gw.Current().TLSCertificate() })
	now := time.Now()
	var recs []flows.Record
	for i := range 5000 {
		src, dst := i%500, (i*7+1+i/500)%500
		d := flows.Allow
		switch {
		case i%50 == 0:
			d = flows.Deny
		case i%37 == 0:
			d = flows.WouldDeny
		}
		recs = append(recs, flows.Record{Key: flows.Key{Source: fmt.Sprintf("svc/s%03d", src), Dest: fmt.Sprintf("s%03d", dst), Method: "GET", Path: "/v1/{id}", Decision: d, Class: 2},
			Start: now.Add(-time.Minute), End: now.Add(-time.Second), Count: uint64(1 + i%13), LatencyUS: 1000})
	}
	if err := c.ShipFlows(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	link, errOut, err := ward(t, "--data-dir", dir, "dashboard", "login")
	if err != nil {
		t.Fatalf("dashboard login: %v\n%s", err, errOut)
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	attr := func(name string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(css("body"), name))
		if err != nil {
			t.Fatal(err)
		}
		return v.Value
	}
	steps(t, ctx, shots, "the large graph",
		chromedp.Navigate(strings.TrimSpace(link)),
		chromedp.WaitVisible(css(`body[data-graph-ms]`)),
		screenshot(t, shots, "1-large-graph"))
	fcp, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(performance.getEntriesByName("first-contentful-paint")[0] || {startTime: -1}).startTime`))
	if err != nil {
		t.Fatal(err)
	}
	graphMS, edges := attr("data-graph-ms"), attr("data-graph-edges")
	steps(t, ctx, shots, "a filter",
		chromedp.SendKeys(css("#graph-search"), "s042"),
		waitText("#graph-stats", "edges"),
		screenshot(t, shots, "2-filtered"))
	filterMS, visible := attr("data-filter-ms"), attr("data-visible-edges")
	if edges != "5000" {
		t.Errorf("the graph has %s edges, want 5000", edges)
	}
	if n, _ := strconv.Atoi(visible); n == 0 || n >= 5000 {
		t.Errorf("the filter s042 left %s edges visible", visible)
	}
	t.Logf("500 services, 5000 edges: first contentful paint %.0f ms, graph fetched and drawn in %s ms, filter \"s042\" (last key) in %s ms, %s edges left",
		fcp, graphMS, filterMS, visible)
}
