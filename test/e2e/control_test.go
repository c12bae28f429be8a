package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/identity"
)

// proc is a ward process the test can stop and start again.
type proc struct {
	t    *testing.T
	args []string
	dir  string
	cmd  *exec.Cmd
	logs *lockedBuffer
}

func startProc(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, args: args, dir: dir, logs: new(lockedBuffer)}
	p.start()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("ward %s log:\n%s", args[0], p.logs.String())
		}
	})
	return p
}

func (p *proc) start() {
	p.cmd = exec.Command(wardBin, p.args...)
	p.cmd.Dir = p.dir
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// controlMesh has no addresses: the sidecars, which follow the server,
// register their own.
const controlMesh = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {protocol: http}
---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {protocol: http}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
    - from: [svc/catalog]
      methods: [%s]
      paths: ["/orders/*"]
`

// TestControlPlane runs the real binaries: resources applied with the CLI
// reach running sidecars within a second; bad input is refused with
// file:line and changes nothing; history, diff and rollback work; roles
// hold; and with the server down the sidecars keep enforcing their last
// snapshot, also after a restart.
func TestControlPlane(t *testing.T) {
	srv := startServerProc(t, "127.0.0.1:0", "127.0.0.1:0")
	data := srv.dataDir
	dir := filepath.Dir(data)
	cli := func(args ...string) (string, error) {
		return ward(t, dir, append(args, "--data-dir", data)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := cli(args...)
		if err != nil {
			t.Fatalf("ward %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	var info struct{ Server string }
	raw, _ := os.ReadFile(filepath.Join(data, "client.json"))
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	ordersIn, catalogIn, catalogOut := freeAddr(t), freeAddr(t), freeAddr(t)
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	mesh := write("mesh.yaml", fmt.Sprintf(controlMesh, "GET"))
	if out := must("apply", "-f", mesh); !strings.Contains(out, "applied: version 1 (was 0)") || !strings.Contains(out, "+AccessPolicy/orders-callers") {
		t.Fatalf("apply: %s", out)
	}

	// Bad input: refused with file and line, nothing recorded.
	for _, tt := range []struct{ name, doc, want string }{
		{"malformed", "apiVersion: ward/v1\nkind: Service\nmetadata: {name: x\n", "bad.yaml:"},
		{"unknown field", "apiVersion: ward/v1\nkind: Service\nmetadata: {name: x}\nspec: {protocol: http, colour: red}\n", "bad.yaml:4"},
		{"wrong kind", "apiVersion: ward/v1\nkind: Servise\nmetadata: {name: x}\nspec: {}\n", "bad.yaml:2"},
		{"missing service", "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: nowhere\n  rules: [{from: [svc/catalog]}]\n", `bad.yaml:5: spec.target: no Service named "nowhere"`},
		{"conflicting routes", "apiVersion: ward/v1\nkind: Route\nmetadata: {name: r1}\nspec:\n  pathPrefix: /orders\n  service: orders\n---\n" +
			"apiVersion: ward/v1\nkind: Route\nmetadata: {name: r2}\nspec:\n  pathPrefix: /orders\n  service: orders\n", `bad.yaml:12: spec.pathPrefix: Route "r1" already answers`},
		{"bad CEL", "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: orders\n  rules: [{from: [svc/catalog], when: 'user.scopes.exists(s, '}]\n", "bad.yaml:6"},
	} {
		out, err := cli("apply", "-f", write("bad.yaml", tt.doc))
		if err == nil || !strings.Contains(out, tt.want) || !strings.Contains(out, "nothing was changed") {
			t.Errorf("%s: %v\n%s\nwant %q", tt.name, err, out, tt.want)
		}
	}
	if out, err := cli("apply", "-f", mesh, "--base-version", "7"); err == nil || !strings.Contains(out, "stale_version") {
		t.Errorf("stale apply: %v\n%s", err, out)
	}

	// Sidecars that take their resources from the server.
	seen := make(chan string, 100)
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.URL.Path
		fmt.Fprint(w, "ok")
	})}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Serve(appLn) }()
	defer app.Close()
	token := func(name string) string {
		return strings.SplitN(must("token", "create", "--id", "spiffe://example.org/svc/"+name), "\n", 2)[0]
	}
	common := []string{"--server", info.Server, "--bundle", filepath.Join(data, "bundle.pem")}
	orders := startProc(t, dir, append([]string{"sidecar", "--service", "orders", "--listen", ordersIn, "--app", appLn.Addr().String(),
		"--outbound", "", "--token", token("orders"), "--data-dir", filepath.Join(dir, "orders")}, common...)...)
	startProc(t, dir, append([]string{"sidecar", "--service", "catalog", "--listen", catalogIn, "--app", freeAddr(t),
		"--outbound", catalogOut, "--token", token("catalog"), "--data-dir", filepath.Join(dir, "catalog")}, common...)...)
	waitListening(t, ordersIn)
	waitListening(t, catalogOut)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: catalogOut}), DisableKeepAlives: true}}
	call := func(method string) int {
		req, _ := http.NewRequest(method, "http://orders/orders/7", nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	waitRegistered(t, dir, data, "orders", ordersIn)
	waitRoutable(t, func() int { return call("GET") })
	if got := call("GET"); got != 200 {
		t.Fatalf("GET: %d", got)
	}
	if got := call("DELETE"); got != 403 {
		t.Fatalf("DELETE before the change: %d", got)
	}
	// until waits for DELETE to answer want and returns how long it took.
	until := func(want int, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for call("DELETE") != want {
			if time.Since(start) > within {
				t.Fatalf("DELETE did not answer %d within %s", want, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}

	// A change reaches the running sidecar within a second.
	wider := write("wider.yaml", fmt.Sprintf(controlMesh, "GET, DELETE"))
	if out := must("diff", "-f", wider); !strings.Contains(out, "+        - DELETE") || !strings.Contains(out, "against version 1") {
		t.Errorf("diff: %s", out)
	}
	must("apply", "-f", wider, "--base-version", "1")
	t.Logf("apply -> enforced by the sidecar in %s", until(200, time.Second))
	if out := must("history"); !strings.Contains(out, "~AccessPolicy/orders-callers") || !strings.Contains(out, "spiffe://example.org/user/admin") {
		t.Errorf("history: %s", out)
	}
	if out := must("history", "2"); !strings.Contains(out, "+        - DELETE") {
		t.Errorf("history 2: %s", out)
	}
	must("rollback", "1")
	t.Logf("rollback -> enforced in %s", until(403, time.Second))
	if out := must("get", "accesspolicy", "orders-callers"); !strings.Contains(out, "version 3") || strings.Contains(out, "DELETE") {
		t.Errorf("get after rollback: %s", out)
	}

	// Roles.
	must("admin", "create", "dev", "--role", "developer", "--services", "catalog", "--out", filepath.Join(dir, "dev.pem"))
	must("admin", "create", "aud", "--role", "auditor", "--out", filepath.Join(dir, "aud.pem"))
	as := func(who string, args ...string) (string, error) {
		return ward(t, dir, append(args, "--server", info.Server, "--bundle", filepath.Join(data, "bundle.pem"), "--credential", filepath.Join(dir, who+".pem"))...)
	}
	for _, tt := range []struct {
		who  string
		args []string
		want string // "" means allowed
	}{
		{"dev", []string{"apply", "-f", wider}, "not_owner"},
		{"dev", []string{"token", "create", "--id", "spiffe://example.org/svc/x"}, "role_forbids"},
		{"dev", []string{"ca", "rotate"}, "role_forbids"},
		{"dev", []string{"apikey", "create", "--app", "x", "--routes", "*"}, "role_forbids"},
		{"dev", []string{"get"}, ""},
		{"aud", []string{"apply", "-f", mesh}, "role_forbids"},
		{"aud", []string{"rollback", "2"}, "role_forbids"},
		{"aud", []string{"cert", "revoke", "--id", "spiffe://example.org/svc/orders"}, "role_forbids"},
		{"aud", []string{"history"}, ""},
		{"aud", []string{"cert", "list"}, ""},
	} {
		out, err := as(tt.who, tt.args...)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(out, tt.want)) {
			t.Errorf("%s %v: %v\n%s\nwant %q", tt.who, tt.args, err, out, tt.want)
		}
	}
	// A developer changes the services they own.
	catalogPolicy := write("catalog.yaml", "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: catalog-callers}\nspec:\n  target: catalog\n  rules: [{from: [svc/orders]}]\n")
	if out, err := as("dev", "apply", "-f", catalogPolicy); err != nil || !strings.Contains(out, "version 4") {
		t.Errorf("developer applying their own service: %v\n%s", err, out)
	}
	if out := must("history"); strings.Count(out, "\n") != 5 {
		t.Errorf("history should hold 4 versions:\n%s", out)
	}
	// Every change and every refusal is in the server's audit log, with who:
	// the developer's refused apply and their own one.
	if out := must("audit", "query", "--type", "resource.apply", "--principal", "spiffe://example.org/user/dev"); !strings.Contains(out, "not_owner") || !strings.Contains(out, "2 records") {
		t.Errorf("the developer's applies in the audit log:\n%s", out)
	}
	// A spare catalog credential, then revoked: orders' sidecar refuses it
	// within a second, and again after a restart without the server.
	spareDir := filepath.Join(dir, "spare")
	enrolled, err := ward(t, dir, append([]string{"identity", "enroll", "--token", token("catalog"), "--out", spareDir}, common...)...)
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, enrolled)
	}
	_, rest, ok := strings.Cut(enrolled, "serial ")
	serial, _, _ := strings.Cut(rest, ",")
	if !ok || serial == "" {
		t.Fatalf("enroll printed no serial:\n%s", enrolled)
	}
	spare, err := identity.NewSource(identity.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")})
	if err != nil {
		t.Fatal(err)
	}
	if err := spare.Load(spareDir); err != nil {
		t.Fatal(err)
	}
	direct := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: spare.ClientTLSConfig(identity.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/svc/orders")))}}
	spareGET := func() error {
		resp, err := direct.Get("https://" + ordersIn + "/orders/7")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := spareGET(); err != nil {
		t.Fatalf("the spare catalog credential before its revocation: %v", err)
	}
	must("cert", "revoke", serial)
	start := time.Now()
	for spareGET() == nil {
		if time.Since(start) > time.Second {
			t.Fatalf("orders' sidecar still accepts certificate %s a second after its revocation", serial)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("revoke -> refused by the sidecar in %s", time.Since(start))
	if fi, err := os.Stat(filepath.Join(dir, "orders", identity.RevocationsFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("orders' %s: %v %v, want mode 0600", identity.RevocationsFile, fi, err)
	}

	// The last good snapshot is the proxy's alone.
	if fi, err := os.Stat(filepath.Join(dir, "orders", "snapshot.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("orders' snapshot.json: %v %v, want mode 0600", fi, err)
	}

	// The server goes away: the sidecars keep enforcing, also across a
	// restart of orders' sidecar.
	srv.stop()
	if got, want := call("GET"), 200; got != want {
		t.Errorf("GET with the server down: %d", got)
	}
	if got := call("DELETE"); got != 403 {
		t.Errorf("DELETE with the server down: %d", got)
	}
	orders.stop()
	orders.args = []string{"sidecar", "--service", "orders", "--listen", ordersIn, "--app", appLn.Addr().String(),
		"--outbound", "", "--data-dir", filepath.Join(dir, "orders"), "--server", info.Server, "--bundle", filepath.Join(data, "bundle.pem")}
	orders.start()
	waitListening(t, ordersIn)
	if got := call("GET"); got != 200 {
		t.Errorf("GET after the sidecar restarted without the server: %d\n%s", got, orders.logs)
	}
	if got := call("DELETE"); got != 403 {
		t.Errorf("DELETE after the sidecar restarted without the server: %d", got)
	}
	if err := spareGET(); err == nil {
		t.Error("after a restart without the server, orders' sidecar accepts the revoked certificate")
	}
	if !strings.Contains(orders.logs.String(), "last good snapshot") {
		t.Errorf("the restarted sidecar did not say it runs on its last good snapshot:\n%s", orders.logs)
	}
}

// TestControlPlaneDocWalkthrough runs the "Try it" block of
// docs/control-plane.md as written and checks what its comments say.
func TestControlPlaneDocWalkthrough(t *testing.T) {
	need(t, "bash", "sed")
	block := docBlock(t, "docs/control-plane.md", "## Try it")
	text := runWalkthrough(t, t.TempDir(), block)
	for _, want := range []string{
		"applied: version 1 (was 0)\n",
		"no change against version 1\n",
		"+        - DELETE\n",
		"applied: version 2 (was 1)\n",
		"# ward resources, version 2\n",
		"2        ", // history, newest first
		"dry run: rolling back to version 1 would make version 3 from version 2; nothing was recorded\n",
		"rolled back to version 1: version 3 (was 2)\n",
		"bad.yaml:10: spec.target: no Service named \"nowhere\"\n",
		"refused: 1 problem(s); nothing was changed\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Count(text, "applied: version") != 2 {
		t.Error("the bad file was applied")
	}
}

// shadowingRoute is issue 12 finding 1's reproduction: a Service evil, its
// policy, and a Route that takes /orders/1 on host localhost from orders'
// any-host /orders, for anonymous callers, forwarding their credentials.
const shadowingRoute = `apiVersion: ward/v1
kind: Service
metadata: {name: evil}
spec: {protocol: http}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: evil-callers}
spec:
  target: evil
  rules: [{from: [gateway/*]}]
---
apiVersion: ward/v1
kind: Route
metadata: {name: evil}
spec:
  host: localhost
  pathPrefix: /orders/1
  service: evil
  auth: {apiKey: none, user: anonymous}
  forwardCredentials: true
`

// TestDeveloperMayNotShadowAnotherTeamsRoute runs the real binaries: a
// developer who owns only evil applies a Route that would take orders'
// /orders/1 at the gateway; the server refuses it with the Route it would
// shadow, records nothing and audits the refusal, and the running gateway
// keeps sending /orders/1 to orders. An admin may still apply it, and the
// gateway then sends /orders/1 to evil.
func TestDeveloperMayNotShadowAnotherTeamsRoute(t *testing.T) {
	e := newEdgeSetup(t)
	must := func(args ...string) string {
		t.Helper()
		out, err := ward(t, e.dir, append(args, "--data-dir", e.data)...)
		if err != nil {
			t.Fatalf("ward %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	must("apply", "-f", e.serverResources())
	e.startFollowingOrders()
	key := e.apiKey("shop", "orders")
	addr := freeAddr(t)
	startProcess(t, e.dir, "gateway", "--name", "edge", "--listen", addr, "--tls-ward-ca", "--data-dir", filepath.Join(e.dir, "edge"),
		"--server", e.server, "--bundle", filepath.Join(e.data, "bundle.pem"), "--token", e.token("spiffe://example.org/gateway/edge"))
	waitListening(t, addr)
	e.waitReady(addr, key)
	jwt := e.jwt("alice", "orders:read", 5*time.Minute)
	toOrders := func(when string) {
		t.Helper()
		if status, reason, body := e.call(addr, "/orders/1", key, jwt); status != 200 || !strings.HasPrefix(body, "orders saw /orders/1") {
			t.Fatalf("%s: /orders/1 answers %d %s %q, want orders' 200", when, status, reason, body)
		}
		<-e.seen
	}
	toOrders("before")

	must("admin", "create", "mallory", "--role", "developer", "--services", "evil", "--out", filepath.Join(e.dir, "mallory.pem"))
	evilIn := freeAddr(t)
	evil := filepath.Join(e.dir, "evil.yaml")
	if err := os.WriteFile(evil, []byte(shadowingRoute), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := ward(t, e.dir, "apply", "-f", evil, "--server", e.server, "--bundle", filepath.Join(e.data, "bundle.pem"),
		"--credential", filepath.Join(e.dir, "mallory.pem"))
	if err == nil || !strings.Contains(out, "403 not_owner") || !strings.Contains(out, `/orders/1 on host "localhost" would go to Route "evil" (service evil) instead of Route "orders" (service orders)`) {
		t.Fatalf("the developer's shadowing Route: %v\n%s", err, out)
	}
	t.Logf("refused: %s", strings.TrimSpace(out))
	if out := must("get"); !strings.Contains(out, "version 1") || strings.Contains(out, "evil") {
		t.Errorf("the refused apply recorded something:\n%s", out)
	}
	if out := must("audit", "query", "--type", "resource.apply", "--principal", "spiffe://example.org/user/mallory"); !strings.Contains(out, "not_owner") || !strings.Contains(out, "1 records") {
		t.Errorf("the refusal in the audit log:\n%s", out)
	}
	toOrders("after the refusal")

	// An admin may: the gateway then sends /orders/1 to evil, with the
	// caller's API key (forwardCredentials), which is why a developer may not.
	evilSeen := make(chan *http.Request, 10)
	evilApp := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilSeen <- r
		fmt.Fprint(w, "evil")
	})}
	evilLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = evilApp.Serve(evilLn) }()
	t.Cleanup(func() { evilApp.Close() })
	if out := must("apply", "-f", evil); !strings.Contains(out, "applied: version 2 (was 1)") || !strings.Contains(out, "+Route/evil") {
		t.Fatalf("the admin's apply: %s", out)
	}
	startProcess(t, e.dir, "sidecar", "--service", "evil", "--listen", evilIn, "--app", evilLn.Addr().String(), "--outbound", "",
		"--token", e.token("spiffe://example.org/svc/evil"), "--data-dir", filepath.Join(e.dir, "evil"),
		"--server", e.server, "--bundle", filepath.Join(e.data, "bundle.pem"))
	waitListening(t, evilIn)
	waitRegistered(t, e.dir, e.data, "evil", evilIn)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		status, reason, body := e.call(addr, "/orders/1", key, jwt)
		if status == 200 && body == "evil" {
			break
		}
		if status == 200 {
			<-e.seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the admin's apply /orders/1 still answers %d %s %q", status, reason, body)
		}
	}
	if r := <-evilSeen; r.Header.Get("X-Api-Key") != key {
		t.Errorf("evil got X-Api-Key %q, want the caller's key forwarded", r.Header.Get("X-Api-Key"))
	}
	// orders keeps the rest of its prefix.
	if status, _, body := e.call(addr, "/orders/2", key, jwt); status != 200 || !strings.HasPrefix(body, "orders saw /orders/2") {
		t.Errorf("/orders/2 after the admin's apply: %d %q", status, body)
	}
}

// TestEdgeOwnershipDocWalkthrough runs the "Edge ownership" block of
// docs/control-plane.md as written and checks what its comments say.
func TestEdgeOwnershipDocWalkthrough(t *testing.T) {
	need(t, "bash", "sed")
	block := docBlock(t, "docs/control-plane.md", "## Edge ownership")
	text := runWalkthrough(t, t.TempDir(), block)
	for _, want := range []string{
		"applied: version 1 (was 0)\n",
		`server refused (403 not_owner): developer "mallory" may not make this change: requests for /orders/1 on host "localhost" would go to Route "evil" (service evil) instead of Route "orders" (service orders)`,
		"applied: version 2 (was 1)\n",
		`requests for /orders/1 on host "localhost" would go to Route "orders" (service orders) instead of Route "evil" (service evil)`,
		"applied: version 3 (was 2)\n",
		"+Route/evil-site",
		"3 records",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Count(text, "not_owner") < 4 { // two refusals, and both again in the audit query
		t.Errorf("want two not_owner refusals, shown and audited:\n%s", text)
	}
}
