package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// idApp is an app that remembers every X-Ward-Request-Id it was sent.
type idApp struct {
	mu  sync.Mutex
	ids map[string]int
}

func (a *idApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("X-Ward-Request-Id")
	a.mu.Lock()
	a.ids[id]++
	a.mu.Unlock()
	fmt.Fprintln(w, "ok")
}

func (a *idApp) seen() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.ids))
	for k, v := range a.ids {
		out[k] = v
	}
	return out
}

// crashable is a ward process the test kills with SIGKILL and starts
// again with the same arguments and data directory.
type crashable struct {
	t    *testing.T
	dir  string
	args []string
	cmd  *exec.Cmd
	logs *lockedBuffer
}

func (p *crashable) start(extra ...string) {
	p.t.Helper()
	p.cmd = exec.Command(wardBin, append(append([]string(nil), p.args...), extra...)...)
	p.cmd.Dir = p.dir
	p.logs.Reset()
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *crashable) signal(sig syscall.Signal) {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// waitServing polls addr until it accepts a connection or the process
// dies.
func (p *crashable) waitServing(addr string) {
	p.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("ward %s does not listen on %s:\n%s", p.args[0], addr, p.logs.String())
		}
	}
}

// TestSidecarKill9KeepsEveryRecord: a sidecar in front of an app that
// remembers each request id it receives is killed with SIGKILL at least
// 30 times under load and restarted on the same data directory, with
// each --audit-sync-interval mode. Every request the app received has
// its sidecar.request record in the sidecar's spool, exactly once, and
// the spool's chain verifies.
func TestSidecarKill9KeepsEveryRecord(t *testing.T) {
	const kills = 30
	start := time.Now()
	data := startServer(t)
	dir := filepath.Dir(data)
	var info struct{ Server string }
	raw, _ := os.ReadFile(filepath.Join(data, "client.json"))
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	token := func(name string) string {
		out, err := ward(t, dir, "token", "create", "--id", "spiffe://example.org/svc/"+name, "--data-dir", data)
		if err != nil {
			t.Fatalf("token: %v\n%s", err, out)
		}
		return strings.SplitN(out, "\n", 2)[0]
	}
	app := &idApp{ids: map[string]int{}}
	srv := &http.Server{Handler: app}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(appLn) }()
	t.Cleanup(func() { srv.Close() })

	ordersIn := freeAddr(t)
	// orders' sidecar reads its policy from this file; the test calls it
	// directly, so no Service needs an address.
	cfg := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: ward/v1
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
      methods: [GET]
      paths: ["/orders/*"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--server", info.Server, "--bundle", filepath.Join(data, "bundle.pem"), "--config", cfg}
	ordersData := filepath.Join(dir, "orders")
	orders := &crashable{t: t, dir: dir, logs: new(lockedBuffer),
		args: append([]string{"sidecar", "--service", "orders", "--listen", ordersIn, "--app", appLn.Addr().String(),
			"--outbound", "", "--data-dir", ordersData}, common...)}
	t.Cleanup(func() {
		orders.signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("orders sidecar log (last run):\n%s", orders.logs.String())
		}
	})
	orders.start("--token", token("orders"))
	// The test calls orders as catalog itself, over mutual TLS with
	// catalog's SVID (a sidecar in between would open its circuit breaker
	// while orders is down and hide the restarts).
	idDir := filepath.Join(dir, "catalog-id")
	if out, err := ward(t, dir, "identity", "enroll", "--server", info.Server, "--bundle", filepath.Join(data, "bundle.pem"),
		"--token", token("catalog"), "--out", idDir); err != nil {
		t.Fatalf("enroll catalog: %v\n%s", err, out)
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: svidClientTLS(t, idDir), MaxIdleConnsPerHost: 8}}
	orders.waitServing(ordersIn)

	var ok, failed atomic.Int64
	load := func(d time.Duration) {
		var wg sync.WaitGroup
		until := time.Now().Add(d)
		for g := range 4 {
			wg.Go(func() {
				for i := 0; time.Now().Before(until); i++ {
					resp, err := client.Get(fmt.Sprintf("https://%s/orders/%d-%d", ordersIn, g, i))
					if err != nil {
						failed.Add(1)
						time.Sleep(5 * time.Millisecond) // the sidecar is down: no busy loop
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
					} else {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
	}

	modes := [][]string{nil, {"--audit-sync-interval", "always"}, {"--audit-sync-interval", "20ms"}}
	for i := range kills {
		// Load runs while the kill lands: the sidecar dies mid-request.
		done := make(chan struct{})
		go func() { load(time.Duration(100+rand.IntN(150)) * time.Millisecond); close(done) }()
		time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
		orders.signal(syscall.SIGKILL)
		<-done
		orders.start(modes[(i+1)%len(modes)]...)
		orders.waitServing(ordersIn)
	}
	load(200 * time.Millisecond) // the last run serves too
	orders.signal(syscall.SIGTERM)

	seen := app.seen()
	if len(seen) < kills {
		t.Fatalf("the app received only %d requests over %d kills (%d answered 200, %d failed)", len(seen), kills, ok.Load(), failed.Load())
	}
	spool := filepath.Join(ordersData, "audit")
	out, err := ward(t, dir, "audit", "verify", "--dir", spool)
	if err != nil || !strings.HasPrefix(out, "OK ") {
		t.Fatalf("the spool does not verify after %d kills: %v\n%s", kills, err, out)
	}
	out, err = ward(t, dir, "audit", "query", "--json", "--dir", spool)
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, out)
	}
	recorded := map[string]int{}
	for line := range strings.Lines(out) {
		var r auditRecord
		if json.Unmarshal([]byte(line), &r) != nil || r.Type != "sidecar.request" {
			continue
		}
		recorded[r.RequestID]++
	}
	var missing, twice []string
	for id, n := range seen {
		if id == "" || n != 1 {
			t.Errorf("the app received request id %q %d times", id, n)
		}
		if recorded[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range recorded {
		if n > 1 {
			twice = append(twice, id)
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Fatalf("after %d kills: %d of %d requests the app received have no record in the spool (e.g. %v); %d recorded more than once (%v)",
			kills, len(missing), len(seen), missing[:min(3, len(missing))], len(twice), twice[:min(3, len(twice))])
	}
	t.Logf("%d kills in %v: the app received %d requests, all recorded; %d answered 200, %d failed while the sidecar was down",
		kills, time.Since(start).Round(time.Millisecond), len(seen), ok.Load(), failed.Load())
}

// svidClientTLS is a client configuration presenting the SVID enrolled in
// dir and trusting its bundle; the peer's chain is checked against the
// bundle (a sidecar's certificate names a SPIFFE ID, not a host).
func svidClientTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pemBundle, err := os.ReadFile(filepath.Join(dir, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBundle) {
		t.Fatal("no certificate in bundle.pem")
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true, // replaced by VerifyConnection: no host name to check
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no peer certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
}

// TestGatewayKill9KeepsEveryRecord: the same for a gateway in front of the
// orders sidecar: killed with SIGKILL at least 30 times under load and
// restarted on the same data directory, every request the app received
// through it has its gateway.request record in the gateway's spool,
// exactly once, and the spool's chain verifies.
func TestGatewayKill9KeepsEveryRecord(t *testing.T) {
	const kills = 30
	start := time.Now()
	e := newEdgeSetup(t)
	// No rate limit: the load is the point here.
	res := strings.Replace(fmt.Sprintf(edgeResources, "ADDR", e.idp.URL), "  rateLimit: {key: apikey, rate: 20/h, burst: 20}\n", "", 1)
	old, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	ordersIn := strings.SplitN(strings.SplitN(string(old), "endpoints: [", 2)[1], "]", 2)[0]
	if err := os.WriteFile(e.config, []byte(strings.Replace(res, `"ADDR"`, ordersIn, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	app := &idApp{ids: map[string]int{}}
	go func() {
		for r := range e.seen {
			app.mu.Lock()
			app.ids[r.Header.Get("X-Ward-Request-Id")]++
			app.mu.Unlock()
		}
	}()
	key := e.apiKey("shop", "orders")
	bearer := e.jwt("alice", "orders:read", 10*time.Minute)
	addr := freeAddr(t)
	gwData := filepath.Join(e.dir, "edge1")
	gw := &crashable{t: t, dir: e.dir, logs: new(lockedBuffer),
		args: []string{"gateway", "--name", "edge1", "--listen", addr, "--config", e.config, "--tls-ward-ca", "--conn-rate", "100000/s",
			"--data-dir", gwData, "--server", e.server, "--bundle", filepath.Join(e.data, "bundle.pem")}}
	t.Cleanup(func() {
		gw.signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("gateway log (last run):\n%s", gw.logs.String())
		}
	})
	gw.start("--token", e.token("spiffe://example.org/gateway/edge1"))
	gw.waitServing(addr)
	e.waitReady(addr, key)

	_, port, _ := net.SplitHostPort(addr)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}, MaxIdleConnsPerHost: 8}}
	var ok, failed atomic.Int64
	load := func(d time.Duration) {
		var wg sync.WaitGroup
		until := time.Now().Add(d)
		for g := range 4 {
			wg.Go(func() {
				for i := 0; time.Now().Before(until); i++ {
					req, _ := http.NewRequest("GET", fmt.Sprintf("https://localhost:%s/orders/%d-%d", port, g, i), nil)
					req.Header.Set("X-Api-Key", key)
					req.Header.Set("Authorization", "Bearer "+bearer)
					resp, err := client.Do(req)
					if err != nil {
						failed.Add(1)
						time.Sleep(5 * time.Millisecond) // the gateway is down: no busy loop
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
					} else {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
	}
	modes := [][]string{nil, {"--audit-sync-interval", "always"}, {"--audit-sync-interval", "20ms"}}
	for i := range kills {
		done := make(chan struct{})
		go func() { load(time.Duration(100+rand.IntN(150)) * time.Millisecond); close(done) }()
		time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
		gw.signal(syscall.SIGKILL)
		<-done
		gw.start(modes[(i+1)%len(modes)]...)
		gw.waitServing(addr)
	}
	load(200 * time.Millisecond)
	gw.signal(syscall.SIGTERM)

	seen := app.seen()
	if len(seen) < kills {
		t.Fatalf("the app received only %d requests over %d kills (%d answered 200, %d failed)", len(seen), kills, ok.Load(), failed.Load())
	}
	spool := filepath.Join(gwData, "audit")
	out, err := ward(t, e.dir, "audit", "verify", "--dir", spool)
	if err != nil || !strings.HasPrefix(out, "OK ") {
		t.Fatalf("the spool does not verify after %d kills: %v\n%s", kills, err, out)
	}
	out, err = ward(t, e.dir, "audit", "query", "--json", "--dir", spool)
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, out)
	}
	recorded := map[string]int{}
	for line := range strings.Lines(out) {
		var r auditRecord
		if json.Unmarshal([]byte(line), &r) != nil || r.Type != "gateway.request" {
			continue
		}
		recorded[r.RequestID]++
	}
	var missing, twice []string
	for id, n := range seen {
		if id == "" || n != 1 {
			t.Errorf("the app received request id %q %d times", id, n)
		}
		if recorded[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range recorded {
		if n > 1 {
			twice = append(twice, id)
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Fatalf("after %d kills: %d of %d requests the app received have no record in the gateway's spool (e.g. %v); %d recorded more than once (%v)",
			kills, len(missing), len(seen), missing[:min(3, len(missing))], len(twice), twice[:min(3, len(twice))])
	}
	t.Logf("%d kills in %v: the app received %d requests, all recorded; %d answered 200, %d failed while the gateway was down",
		kills, time.Since(start).Round(time.Millisecond), len(seen), ok.Load(), failed.Load())
}
