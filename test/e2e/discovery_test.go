package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/store/pgtest"
)

// ejectionWindow bounds how long requests may fail after an instance dies
// without warning. With the mesh client's Resilience defaults an endpoint
// is ejected after 5 failures in a row (proxy.EjectorConfig.Failures), and
// an idempotent request that could not connect is retried once on another
// endpoint within the retry budget (20% of requests, at least 3 a second).
// At 200 requests a second over three instances the dead one sees its 5
// failures within about 75ms; a second leaves room for a busy machine.
const ejectionWindow = time.Second

// instances lists the live instances of service with `ward instances
// SERVICE -o json`, as the operator whose server data directory is data.
func instances(t *testing.T, dir, data, service string) ([]control.Instance, error) {
	t.Helper()
	out, err := ward(t, dir, "instances", service, "-o", "json", "--data-dir", data)
	if err != nil {
		return nil, fmt.Errorf("ward instances %s: %w\n%s", service, err, out)
	}
	var list []control.Instance
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("ward instances %s -o json: %w\n%s", service, err, out)
	}
	return list, nil
}

// waitRegistered waits until `ward instances SERVICE` lists an instance
// at each of addrs (the sidecars' inbound addresses) and returns the list.
// Tests whose sidecars follow the server call it before sending traffic:
// no Service carries a hand-written address there.
func waitRegistered(t *testing.T, dir, data, service string, addrs ...string) []control.Instance {
	t.Helper()
	var list []control.Instance
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		list, err = instances(t, dir, data, service)
		if err == nil && hasAll(list, addrs) {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("instances of %s never listed %v: %v %v", service, addrs, list, err)
		}
	}
}

func hasAll(list []control.Instance, addrs []string) bool {
	for _, a := range addrs {
		if !slices.ContainsFunc(list, func(in control.Instance) bool { return in.Address == a }) {
			return false
		}
	}
	return true
}

// namedApp serves "instance NAME" on a loopback port and returns its
// address.
func namedApp(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "instance %s", name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// discovery is a Ward control plane (one server, or two on PostgreSQL)
// for discovery tests: services carry no addresses; their sidecars
// register themselves.
type discovery struct {
	t      *testing.T
	dir    string
	data   string // the data directory operator commands use
	server string // what proxies get as --server (may list two)
	bundle string
	roots  *x509.CertPool
}

// newDiscoveryServer starts one `ward server` (SQLite) on fixed addresses,
// so that it can be restarted where the proxies expect it, with extra
// server flags.
func newDiscoveryServer(t *testing.T, extra ...string) (*discovery, *serverProc) {
	t.Helper()
	dir := t.TempDir()
	api, pub := freeAddr(t), freeAddr(t)
	s := &serverProc{t: t, dataDir: filepath.Join(dir, "data"), logs: new(lockedBuffer)}
	s.args = append([]string{"server", "--data-dir", s.dataDir, "--trust-domain", "example.org", "--listen", api, "--public-listen", pub}, extra...)
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	s.start()
	d := &discovery{t: t, dir: dir, data: s.dataDir, server: "https://" + api, bundle: filepath.Join(s.dataDir, "bundle.pem")}
	d.loadRoots()
	return d, s
}

func (d *discovery) loadRoots() {
	d.t.Helper()
	pem, err := os.ReadFile(d.bundle)
	if err != nil {
		d.t.Fatal(err)
	}
	d.roots = x509.NewCertPool()
	if !d.roots.AppendCertsFromPEM(pem) {
		d.t.Fatal("no certificate in the bundle")
	}
}

// must runs an operator command and returns its output.
func (d *discovery) must(args ...string) string {
	d.t.Helper()
	out, err := ward(d.t, d.dir, append(args, "--data-dir", d.data)...)
	if err != nil {
		d.t.Fatalf("ward %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (d *discovery) token(id string) string {
	d.t.Helper()
	return strings.SplitN(d.must("token", "create", "--id", id), "\n", 2)[0]
}

// apply applies resources given as YAML text.
func (d *discovery) apply(name, yaml string) {
	d.t.Helper()
	path := filepath.Join(d.dir, name)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		d.t.Fatal(err)
	}
	d.must("apply", "-f", path)
}

// operator is a control client with the bootstrap operator credential of
// the data directory data, for polling faster than the CLI can.
func (d *discovery) operator(data string) *control.Client {
	d.t.Helper()
	cert, err := control.LoadCredential(filepath.Join(data, "operator", "admin.pem"))
	if err != nil {
		d.t.Fatal(err)
	}
	return d.client(cert)
}

// client is a control client authenticating with cert.
func (d *discovery) client(cert *tls.Certificate) *control.Client {
	d.t.Helper()
	pem, err := os.ReadFile(d.bundle)
	if err != nil {
		d.t.Fatal(err)
	}
	b, err := identity.ParseBundlePEM(spiffeid.RequireTrustDomainFromString("example.org"), pem)
	if err != nil {
		d.t.Fatal(err)
	}
	c, err := control.NewClient(d.server, b, cert)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(c.CloseIdleConnections)
	return c
}

// instance is one `ward sidecar` of a service with its own app, which
// answers "instance NAME".
type instance struct {
	name string
	addr string // the sidecar's inbound (mutual TLS) address
	p    *crashable
}

// startInstance runs a sidecar for service, following the server (no
// --config: it registers its inbound address itself), in front of a new
// app named name.
func (d *discovery) startInstance(service, name string, extra ...string) *instance {
	d.t.Helper()
	in := &instance{name: name, addr: freeAddr(d.t)}
	args := append([]string{"sidecar", "--service", service, "--listen", in.addr, "--app", namedApp(d.t, name), "--outbound", "",
		"--data-dir", filepath.Join(d.dir, "sidecar-"+name), "--server", d.server, "--bundle", d.bundle}, extra...)
	in.p = &crashable{t: d.t, dir: d.dir, args: args, logs: new(lockedBuffer)}
	d.t.Cleanup(func() {
		in.p.signal(syscall.SIGKILL)
		if d.t.Failed() {
			d.t.Logf("sidecar %s log:\n%s", name, in.p.logs.String())
		}
	})
	in.p.start("--token", d.token("spiffe://example.org/svc/"+service))
	in.p.waitServing(in.addr)
	return in
}

// startGateway runs a `ward gateway` that follows the server and returns
// its HTTPS address.
func (d *discovery) startGateway(name string) (*proc, string) {
	d.t.Helper()
	addr := freeAddr(d.t)
	args := []string{"gateway", "--name", name, "--listen", addr, "--tls-ward-ca", "--data-dir", filepath.Join(d.dir, name),
		"--server", d.server, "--bundle", d.bundle, "--conn-rate", "100000/s", "--conn-burst", "100000"}
	p := startProc(d.t, d.dir, append(args, "--token", d.token("spiffe://example.org/gateway/"+name))...)
	p.args = args
	waitListening(d.t, addr)
	return p, addr
}

// discoveryResources: orders has no address of its own; the gateway
// routes /orders to it for anyone, and may GET it.
const discoveryResources = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {protocol: http}
---
apiVersion: ward/v1
kind: Route
metadata: {name: orders}
spec:
  pathPrefix: /orders
  service: orders
  auth: {apiKey: none, user: anonymous}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
    - from: [gateway/*]
      methods: [GET]
      paths: ["/orders/*"]
`

// gatewayClient is an HTTPS client of the gateway at addr: get sends GET
// path and returns the status and the body.
func (d *discovery) gatewayClient(addr string) func(path string) (int, string, error) {
	_, port, _ := net.SplitHostPort(addr)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.roots, ServerName: "localhost"}, MaxIdleConnsPerHost: 32}
	d.t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return func(path string) (int, string, error) {
		resp, err := c.Get("https://localhost:" + port + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
}

// waitServed sends requests through get until every one of names has
// answered one.
func waitServed(t *testing.T, get func(string) (int, string, error), names ...string) {
	t.Helper()
	seen := map[string]bool{}
	var last string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		status, body, err := get("/orders/ready")
		if err == nil && status == http.StatusOK {
			seen[strings.TrimPrefix(body, "instance ")] = true
		}
		last = fmt.Sprintf("%d %q %v", status, body, err)
		if !slices.ContainsFunc(names, func(n string) bool { return !seen[n] }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instances %v not all served (seen %v); last answer %s", names, seen, last)
		}
	}
}

// result is one request of a load run.
type result struct {
	start, end time.Time
	status     int
	body       string
	err        error
}

func (r result) ok() bool { return r.err == nil && r.status == http.StatusOK }

func (r result) String() string {
	if r.err != nil {
		return fmt.Sprintf("%s: %v", r.start.Format("15:04:05.000"), r.err)
	}
	return fmt.Sprintf("%s: %d %.120q", r.start.Format("15:04:05.000"), r.status, r.body)
}

// load sends GETs at a steady rate until stopped and keeps every result.
type load struct {
	mu      sync.Mutex
	results []result
	skipped int // ticks with every worker busy
	stop    chan struct{}
	done    sync.WaitGroup
}

// startLoad sends rate GETs a second through get, from 16 workers.
func startLoad(t *testing.T, rate int, get func(string) (int, string, error)) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	jobs := make(chan int, 16)
	for range 16 {
		l.done.Go(func() {
			for i := range jobs {
				start := time.Now()
				status, body, err := get(fmt.Sprintf("/orders/%d", i))
				r := result{start: start, end: time.Now(), status: status, body: body, err: err}
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
			}
		})
	}
	l.done.Go(func() {
		defer close(jobs)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				select {
				case jobs <- i:
				default:
					l.mu.Lock()
					l.skipped++
					l.mu.Unlock()
				}
			}
		}
	})
	t.Cleanup(l.end)
	return l
}

// end stops the load and waits for the requests in flight.
func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// snapshot returns the results so far.
func (l *load) snapshot() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// failed returns the failed requests that started in [from, to).
func (l *load) failed(from, to time.Time) []result {
	var out []result
	for _, r := range l.snapshot() {
		if !r.ok() && !r.start.Before(from) && r.start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// firstFrom is when the first answer from instance name arrived after
// since.
func (l *load) firstFrom(name string, since time.Time) (time.Time, bool) {
	first := time.Time{}
	for _, r := range l.snapshot() {
		if r.ok() && r.body == "instance "+name && r.end.After(since) && (first.IsZero() || r.end.Before(first)) {
			first = r.end
		}
	}
	return first, !first.IsZero()
}

// summary counts the answers per instance and the failures.
func (l *load) summary() string {
	counts := map[string]int{}
	for _, r := range l.snapshot() {
		if r.ok() {
			counts[r.body]++
		} else {
			counts["failed"]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %d; ", k, counts[k])
	}
	l.mu.Lock()
	fmt.Fprintf(&b, "%d ticks skipped (every worker busy)", l.skipped)
	l.mu.Unlock()
	return b.String()
}

// reportFailures fails t with up to five of failures.
func reportFailures(t *testing.T, what string, failures []result) {
	t.Helper()
	if len(failures) == 0 {
		return
	}
	var b strings.Builder
	for _, r := range failures[:min(5, len(failures))] {
		b.WriteString("\n  " + r.String())
	}
	t.Errorf("%s: %d failed requests, e.g.%s", what, len(failures), b.String())
}

// waitRegisteredFast polls the server with c every 10ms until an
// instance of service is at addr and returns it with the time it was
// first seen (or its registration time, when earlier).
func waitRegisteredFast(t *testing.T, c *control.Client, service, addr string) (control.Instance, time.Time) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		list, err := c.Instances(ctx, service)
		cancel()
		seen := time.Now()
		if i := slices.IndexFunc(list, func(in control.Instance) bool { return in.Address == addr }); err == nil && i >= 0 {
			at := seen
			if r := list[i].Renewed; !r.IsZero() && r.Before(at) {
				at = r
			}
			return list[i], at
		}
		if time.Now().After(deadline) {
			t.Fatalf("no instance of %s at %s: %v %v", service, addr, list, err)
		}
	}
}

// waitGone polls `ward instances SERVICE` until nothing is listed at addr
// and returns how long that took from since.
func waitGone(t *testing.T, d *discovery, data, service, addr string, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	for {
		asked := time.Since(since) // the listing below takes a moment: judge by when it was asked for
		list, err := instances(t, d.dir, data, service)
		if err == nil && !hasAll(list, []string{addr}) {
			if asked > within {
				t.Fatalf("%s listed %s until %s after it went silent, want within %s", service, addr, asked.Round(time.Millisecond), within)
			}
			return asked
		}
		if time.Since(since) > within {
			t.Fatalf("%s still lists %s %s after %s: %v %v", service, addr, time.Since(since).Round(time.Millisecond), within, list, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDiscoveryKill: three registered instances of orders behind a
// gateway that follows the server, under 200 idempotent GETs a second.
// One is killed with SIGKILL: no request started later than the ejection
// window after the kill fails, and it leaves `ward instances` within its
// TTL and two seconds (the batched renewal write, the sweep). A fourth
// instance then gets traffic within a second of its registration, and one
// stopped with SIGTERM drains with no failed request.
func TestDiscoveryKill(t *testing.T) {
	const ttl = 3 * time.Second
	d, _ := newDiscoveryServer(t, "--instance-ttl", ttl.String())
	d.apply("orders.yaml", discoveryResources)
	_, gw := d.startGateway("edge")
	get := d.gatewayClient(gw)
	ins := []*instance{
		d.startInstance("orders", "1", "--drain", "2s"),
		d.startInstance("orders", "2", "--drain", "2s"),
		d.startInstance("orders", "3", "--drain", "2s"),
	}
	list := waitRegistered(t, d.dir, d.data, "orders", ins[0].addr, ins[1].addr, ins[2].addr)
	for _, in := range list {
		if in.TTL != ttl.String() || in.SPIFFEID != "spiffe://example.org/svc/orders" || in.Serial == "" || in.ID == "" {
			t.Errorf("instance %+v: want TTL %s, SPIFFE ID svc/orders, a serial and an id", in, ttl)
		}
	}
	waitServed(t, get, "1", "2", "3")

	l := startLoad(t, 200, get)
	time.Sleep(time.Second)

	// SIGKILL: no deregistration, the instance just stops answering.
	killed := ins[1]
	killAt := time.Now()
	killed.p.signal(syscall.SIGKILL)
	// Its expiry is its last renewal (at most TTL/3 before the kill) plus
	// the TTL; the server writes renewals up to a second late (batched)
	// and sweeps once a second: it leaves within TTL + 2s of the kill.
	gone := waitGone(t, d, d.data, "orders", killed.addr, killAt, ttl+2*time.Second)
	t.Logf("the killed instance left `ward instances` %s after SIGKILL (TTL %s)", gone.Round(time.Millisecond), ttl)
	if wait := time.Until(killAt.Add(ejectionWindow + 500*time.Millisecond)); wait > 0 {
		time.Sleep(wait)
	}
	early := l.failed(killAt.Add(-time.Second), killAt.Add(ejectionWindow))
	t.Logf("%d requests failed within the ejection window (%s) after the kill", len(early), ejectionWindow)

	// A fourth instance gets traffic within a second of its registration.
	op := d.operator(d.data)
	fourth := d.startInstance("orders", "4", "--drain", "2s")
	ins = append(ins, fourth)
	reg, regAt := waitRegisteredFast(t, op, "orders", fourth.addr)
	var first time.Time
	for deadline := regAt.Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ok bool
		if first, ok = l.firstFrom("4", regAt.Add(-time.Second)); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance 4 (registered as %s) got no request within 3s: %s", reg.ID, l.summary())
		}
	}
	if took := first.Sub(regAt); took > time.Second {
		t.Errorf("instance 4 got its first request %s after its registration, want within 1s", took)
	} else {
		t.Logf("instance 4 got its first request %s after its registration", took.Round(time.Millisecond))
	}

	// SIGTERM: the instance deregisters, keeps serving for --drain, then
	// closes; not one request fails.
	time.Sleep(500 * time.Millisecond)
	stopped := ins[0]
	termAt := time.Now()
	stopped.p.signal(syscall.SIGTERM)
	exitAt := time.Now()
	t.Logf("instance 1 exited %s after SIGTERM (--drain 2s)", exitAt.Sub(termAt).Round(time.Millisecond))
	if list, err := instances(t, d.dir, d.data, "orders"); err != nil || hasAll(list, []string{stopped.addr}) {
		t.Errorf("after a clean stop instance 1 is still listed (or the listing failed): %v %v", list, err)
	}
	time.Sleep(time.Second)
	l.end()
	reportFailures(t, "over the drain of instance 1", l.failed(termAt, exitAt.Add(time.Second)))
	reportFailures(t, "later than the ejection window after the kill", l.failed(killAt.Add(ejectionWindow), time.Now()))
	reportFailures(t, "before the kill", l.failed(time.Time{}, killAt))
	if last, ok := l.firstFrom("1", exitAt.Add(100*time.Millisecond)); ok {
		t.Errorf("instance 1 answered at %s, after it exited", last.Format("15:04:05.000"))
	}
	t.Logf("load: %s", l.summary())
}

// TestDiscoveryImpostor: catalog's SVID may not register an instance of
// orders (403, audited as instance.refused, nothing stored), nor renew or
// remove orders' instance; an address that is not the caller's own, or a
// malformed one, is refused with a clear error and stores nothing.
func TestDiscoveryImpostor(t *testing.T) {
	d, _ := newDiscoveryServer(t)
	d.apply("services.yaml", discoveryResources+`---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {protocol: http}
`)
	orders := d.startInstance("orders", "orders-1")
	before := waitRegistered(t, d.dir, d.data, "orders", orders.addr)

	catDir := filepath.Join(d.dir, "catalog-id")
	if out, err := ward(t, d.dir, "identity", "enroll", "--server", d.server, "--bundle", d.bundle,
		"--token", d.token("spiffe://example.org/svc/catalog"), "--out", catDir); err != nil {
		t.Fatalf("enroll catalog: %v\n%s", err, out)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(catDir, identity.SVIDFile), filepath.Join(catDir, identity.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	catalog := d.client(&cert)
	ctx := context.Background()
	apiErr := func(err error) *control.APIError {
		var ae *control.APIError
		if !errors.As(err, &ae) {
			return nil
		}
		return ae
	}

	// catalog as orders, with an address of its own: refused and audited.
	own := freeAddr(t)
	_, err = catalog.RegisterInstance(ctx, control.InstanceRegistration{Service: "orders", Address: own, Started: time.Now()})
	if ae := apiErr(err); ae == nil || ae.Status != http.StatusForbidden || ae.Body.Message == "" {
		t.Fatalf("catalog registering as orders: %v, want a 403 with a message", err)
	} else {
		t.Logf("catalog as orders: %v", err)
	}
	out := d.must("audit", "query", "--type", "instance.refused", "--json")
	if !strings.Contains(out, "spiffe://example.org/svc/catalog") || !strings.Contains(out, "orders") {
		t.Errorf("no instance.refused record naming catalog and orders:\n%s", out)
	}
	// Nor may it renew or remove orders' instance.
	if _, err := catalog.RenewInstance(ctx, before[0].ID); apiErr(err) == nil || apiErr(err).Status/100 != 4 {
		t.Errorf("catalog renewing orders' instance: %v, want a 4xx", err)
	}
	if err := catalog.DeregisterInstance(ctx, before[0].ID); apiErr(err) == nil || apiErr(err).Status/100 != 4 {
		t.Errorf("catalog removing orders' instance: %v, want a 4xx", err)
	}
	after, err := instances(t, d.dir, d.data, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].ID != before[0].ID || after[0].Address != orders.addr {
		t.Errorf("orders' instances changed: before %+v, after %+v", before, after)
	}

	// catalog as itself, at addresses that are not its own or not
	// addresses: each refused with a message naming the address.
	for _, addr := range []string{
		"10.9.8.7:443",    // not the caller's own
		"127.0.0.1",       // no port
		"127.0.0.1:0",     // port 0
		"127.0.0.1:70000", // port out of range
		"localhost:8443",  // a host name
		"",                // nothing
	} {
		_, err := catalog.RegisterInstance(ctx, control.InstanceRegistration{Service: "catalog", Address: addr, Started: time.Now()})
		ae := apiErr(err)
		switch {
		case ae == nil:
			t.Errorf("address %q: %v, want a refusal", addr, err)
		case ae.Status != http.StatusBadRequest && ae.Status != http.StatusForbidden:
			t.Errorf("address %q: %v, want 400 or 403", addr, err)
		case !strings.Contains(ae.Body.Message, "address") || (addr != "" && !strings.Contains(ae.Body.Message, addr)):
			t.Errorf("address %q: unclear message %q", addr, ae.Body.Message)
		default:
			t.Logf("address %q: %v", addr, err)
		}
	}
	if list, err := instances(t, d.dir, d.data, "catalog"); err != nil || len(list) != 0 {
		t.Errorf("refused registrations stored something: %v %v", list, err)
	}

	// Its own address is fine: the refusals above were about the address.
	in, err := catalog.RegisterInstance(ctx, control.InstanceRegistration{Service: "catalog", Address: own, Started: time.Now()})
	if err != nil || in.Address != own || in.SPIFFEID != "spiffe://example.org/svc/catalog" {
		t.Fatalf("catalog registering itself at %s: %+v %v", own, in, err)
	}
	if list := waitRegistered(t, d.dir, d.data, "catalog", own); len(list) != 1 {
		t.Errorf("catalog's instances: %+v", list)
	}
	if err := catalog.DeregisterInstance(ctx, in.ID); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	if list, err := instances(t, d.dir, d.data, "catalog"); err != nil || len(list) != 0 {
		t.Errorf("after deregistering: %v %v", list, err)
	}
	if _, err := catalog.RenewInstance(ctx, in.ID); apiErr(err) == nil || apiErr(err).Status != http.StatusNotFound || apiErr(err).Code() != control.CodeInstanceGone {
		t.Errorf("renewing a deregistered instance: %v, want 404 %s", err, control.CodeInstanceGone)
	}
}

// TestDiscoveryServerRestart: with the server (SQLite) stopped and
// started again under traffic through a gateway to three registered
// instances, no request fails; the set is intact afterwards and the
// renewals resume. A gateway restarted while the server is down still
// reaches the instances from its last saved snapshot.
func TestDiscoveryServerRestart(t *testing.T) {
	d, srv := newDiscoveryServer(t)
	d.apply("orders.yaml", discoveryResources)
	gwp, gw := d.startGateway("edge")
	get := d.gatewayClient(gw)
	ins := []*instance{d.startInstance("orders", "1"), d.startInstance("orders", "2"), d.startInstance("orders", "3")}
	before := waitRegistered(t, d.dir, d.data, "orders", ins[0].addr, ins[1].addr, ins[2].addr)
	waitServed(t, get, "1", "2", "3")

	l := startLoad(t, 200, get)
	time.Sleep(500 * time.Millisecond)
	srv.stop()
	downAt := time.Now()
	time.Sleep(2 * time.Second)
	l.end()
	reportFailures(t, "with the server down", l.failed(time.Time{}, time.Now()))

	// The gateway restarts without the server: its last snapshot has the
	// instances.
	gwp.stop()
	gwp.start()
	waitListening(t, gw)
	get = d.gatewayClient(gw)
	waitServed(t, get, "1", "2", "3")
	if !strings.Contains(gwp.logs.String(), "last good snapshot") {
		t.Errorf("the restarted gateway did not say it runs on its last good snapshot:\n%s", gwp.logs)
	}

	l2 := startLoad(t, 200, get)
	time.Sleep(500 * time.Millisecond)
	srv.start()
	upAt := time.Now()
	t.Logf("the server was down for %s", upAt.Sub(downAt).Round(time.Millisecond))
	after := waitRegistered(t, d.dir, d.data, "orders", ins[0].addr, ins[1].addr, ins[2].addr)
	ids := func(list []control.Instance) []string {
		var out []string
		for _, in := range list {
			out = append(out, in.Address+"="+in.ID)
		}
		sort.Strings(out)
		return out
	}
	if !slices.Equal(ids(before), ids(after)) {
		t.Errorf("the set changed across the restart: before %v, after %v", ids(before), ids(after))
	}
	// Each instance renews again (every TTL/3, TTL 10s by default).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		list, err := instances(t, d.dir, d.data, "orders")
		renewed := 0
		for _, in := range list {
			if in.Renewed.After(upAt) {
				renewed++
			}
		}
		if err == nil && renewed == len(ins) && len(list) == len(ins) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewals did not resume within 10s of the restart: %+v %v", list, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	l2.end()
	reportFailures(t, "across the server's restart", l2.failed(time.Time{}, time.Now()))
	t.Logf("server down: %s; restarted gateway and server up: %s", l.summary(), l2.summary())
}

// TestDiscoveryFailover: two servers on one PostgreSQL, the gateway and
// the sidecars given both, the leader first. The leader stops under
// traffic: no request fails, the set survives, and an instance registered
// through the surviving server gets traffic within a second.
func TestDiscoveryFailover(t *testing.T) {
	dsn := pgURL(t, pgtest.Start(t))
	dir := t.TempDir()
	type server struct {
		p        *serverProc
		url, pub string
	}
	newServer := func(name string, extra ...string) server {
		api, pub := freeAddr(t), freeAddr(t)
		s := &serverProc{t: t, dataDir: filepath.Join(dir, name), logs: new(lockedBuffer)}
		s.args = append([]string{"server", "--data-dir", s.dataDir, "--trust-domain", "example.org", "--listen", api, "--public-listen", pub,
			"--store", dsn, "--instance-ttl", "3s"}, extra...)
		t.Cleanup(func() {
			s.stop()
			if t.Failed() {
				t.Logf("server %s log:\n%s", name, s.logs.String())
			}
		})
		s.start()
		return server{p: s, url: "https://" + api, pub: "http://" + pub}
	}
	a := newServer("a")
	b := newServer("b", "--kek-file", filepath.Join(dir, "a", "kek"))
	leads := func(s server) bool {
		resp, err := http.Get(s.pub + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), "\nward_server_leader 1")
	}
	for deadline := time.Now().Add(15 * time.Second); !leads(a) && !leads(b); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no server leads")
		}
	}
	leader, other := a, b
	if leads(b) {
		leader, other = b, a
	}
	d := &discovery{t: t, dir: dir, data: other.p.dataDir, server: leader.url + "," + other.url, bundle: filepath.Join(a.p.dataDir, "bundle.pem")}
	d.loadRoots()
	d.apply("orders.yaml", discoveryResources)
	_, gw := d.startGateway("edge")
	get := d.gatewayClient(gw)
	ins := []*instance{d.startInstance("orders", "1"), d.startInstance("orders", "2"), d.startInstance("orders", "3")}
	before := waitRegistered(t, dir, d.data, "orders", ins[0].addr, ins[1].addr, ins[2].addr)
	waitServed(t, get, "1", "2", "3")

	l := startLoad(t, 200, get)
	time.Sleep(500 * time.Millisecond)
	stopAt := time.Now()
	leader.p.stop()
	t.Logf("the leader stopped in %s", time.Since(stopAt).Round(time.Millisecond))
	for deadline := time.Now().Add(15 * time.Second); !leads(other); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the surviving server does not lead")
		}
	}
	t.Logf("the other server leads %s after the leader stopped", time.Since(stopAt).Round(time.Millisecond))
	// Past a TTL and a renewal: the set is still all there.
	time.Sleep(4 * time.Second)
	after := waitRegistered(t, dir, d.data, "orders", ins[0].addr, ins[1].addr, ins[2].addr)
	if len(after) != len(before) {
		t.Errorf("the set changed across the failover: before %+v, after %+v", before, after)
	}

	// A new instance registered through the surviving server alone.
	survivor := &discovery{t: t, dir: dir, data: other.p.dataDir, server: other.url, bundle: d.bundle, roots: d.roots}
	fourth := survivor.startInstance("orders", "4")
	_, regAt := waitRegisteredFast(t, survivor.operator(other.p.dataDir), "orders", fourth.addr)
	var first time.Time
	for deadline := regAt.Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ok bool
		if first, ok = l.firstFrom("4", regAt.Add(-time.Second)); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance 4 got no request within 3s of its registration: %s", l.summary())
		}
	}
	if took := first.Sub(regAt); took > time.Second {
		t.Errorf("instance 4 got its first request %s after its registration, want within 1s", took)
	} else {
		t.Logf("instance 4, registered through the surviving server, got its first request %s after its registration", took.Round(time.Millisecond))
	}
	time.Sleep(500 * time.Millisecond)
	l.end()
	reportFailures(t, "across the failover", l.failed(time.Time{}, time.Now()))
	t.Logf("load: %s", l.summary())
}

// waitRoutable waits until call, a request from a proxy that follows the
// server to a service whose instances registered, stops failing for want
// of an endpoint (no answer, 502 or 503): the instances reached the
// caller's snapshot. It returns call's last status.
func waitRoutable(t *testing.T, call func() int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		switch status := call(); status {
		case 0, http.StatusBadGateway, http.StatusServiceUnavailable:
			if time.Now().After(deadline) {
				t.Fatalf("the caller still answers %d 10s after the instances registered", status)
			}
		default:
			return status
		}
	}
}

// serverResources writes the edge set-up's resources for the server
// (edge.yaml without orders' address: proxies that follow the server
// learn orders' registered instances) and returns the file's path.
func (e *edgeSetup) serverResources() string {
	e.t.Helper()
	raw, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	static := fmt.Sprintf("spec: {endpoints: [%q]}", e.ordersIn)
	if !strings.Contains(string(raw), static) {
		e.t.Fatalf("edge.yaml does not give orders' address as %s", static)
	}
	path := filepath.Join(e.dir, "edge-server.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(raw), static, "spec: {protocol: http}", 1)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// startFollowingOrders runs a second sidecar of orders, in front of the
// same app, that follows the server (the set-up's first one reads
// edge.yaml) and waits until it registered.
func (e *edgeSetup) startFollowingOrders() string {
	e.t.Helper()
	addr := freeAddr(e.t)
	startProcess(e.t, e.dir, "sidecar", "--service", "orders", "--listen", addr, "--app", e.app, "--outbound", "",
		"--token", e.token("spiffe://example.org/svc/orders"), "--data-dir", filepath.Join(e.dir, "orders-follows"),
		"--server", e.server, "--bundle", filepath.Join(e.data, "bundle.pem"))
	waitListening(e.t, addr)
	waitRegistered(e.t, e.dir, e.data, "orders", addr)
	return addr
}
