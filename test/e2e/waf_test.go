package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wafSetup is a real `ward server`, an echo app behind a real `ward
// sidecar` (service echo) and a real `ward gateway` whose one Route sends
// everything, anonymously, to echo with the WAF configured by the test.
type wafSetup struct {
	t       *testing.T
	dir     string
	data    string
	gwData  string
	gateway string // the gateway's HTTPS address
	roots   *x509.CertPool
	app     *echoApp
}

// echoApp answers every request with 200 and what it received, so that a
// test can tell a forwarded request from a refused one.
type echoApp struct {
	addr string
	hook func(w http.ResponseWriter, r *http.Request) bool // handles the request when it returns true
}

func (a *echoApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.hook != nil && a.hook(w, r) {
		return
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	fmt.Fprintf(w, "echo %s %s %d bytes\n", r.Method, r.URL.RequestURI(), len(b))
}

const wafResources = `apiVersion: ward/v1
kind: Service
metadata: {name: echo}
spec: {endpoints: [%q], limits: {body: 4MiB}}
---
apiVersion: ward/v1
kind: Route
metadata: {name: all}
spec:
  pathPrefix: /
  service: echo
  auth: {apiKey: none, user: anonymous}
  limits: {body: 4MiB}
  waf: %s
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: echo-callers}
spec:
  target: echo
  rules:
    - from: [gateway/*]
`

// newWAFSetup starts the processes with the Route's waf set to wafYAML
// (a YAML flow mapping) and app's hook.
func newWAFSetup(t *testing.T, wafYAML string, hook func(http.ResponseWriter, *http.Request) bool) *wafSetup {
	t.Helper()
	srv := startServerProc(t, freeAddr(t), freeAddr(t))
	w := &wafSetup{t: t, data: srv.dataDir, app: &echoApp{hook: hook}}
	w.dir = filepath.Dir(w.data)
	var info struct{ Server string }
	raw, _ := os.ReadFile(filepath.Join(w.data, "client.json"))
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: w.app, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = app.Serve(appLn) }()
	t.Cleanup(func() { app.Close() })
	w.app.addr = appLn.Addr().String()

	config := filepath.Join(w.dir, "waf.yaml")
	echoIn := freeAddr(t)
	if err := os.WriteFile(config, []byte(fmt.Sprintf(wafResources, echoIn, wafYAML)), 0o644); err != nil {
		t.Fatal(err)
	}
	token := func(id string) string {
		out, err := ward(t, w.dir, "token", "create", "--id", id, "--data-dir", w.data)
		if err != nil {
			t.Fatalf("token: %v\n%s", err, out)
		}
		return strings.SplitN(out, "\n", 2)[0]
	}
	bundle := filepath.Join(w.data, "bundle.pem")
	startProcess(t, w.dir, "sidecar", "--service", "echo", "--listen", echoIn, "--app", w.app.addr, "--outbound", "",
		"--token", token("spiffe://example.org/svc/echo"), "--data-dir", filepath.Join(w.dir, "echo"),
		"--server", info.Server, "--bundle", bundle, "--config", config)
	waitListening(t, echoIn)
	w.gateway = freeAddr(t)
	w.gwData = filepath.Join(w.dir, "edge")
	startProcess(t, w.dir, "gateway", "--name", "edge", "--listen", w.gateway, "--config", config, "--tls-ward-ca",
		"--token", token("spiffe://example.org/gateway/edge"), "--data-dir", w.gwData,
		"--server", info.Server, "--bundle", bundle,
		// Every request of these tests comes from one address, each on a
		// connection of its own.
		"--conn-rate", "100000/s", "--conn-burst", "100000")
	waitListening(t, w.gateway)
	pem, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	w.roots = x509.NewCertPool()
	w.roots.AppendCertsFromPEM(pem)
	return w
}

// client is an HTTPS client of the gateway.
func (w *wafSetup) client() *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.roots, ServerName: "localhost"}}
	w.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// url is the gateway's URL of path.
func (w *wafSetup) url(path string) string {
	_, port, _ := net.SplitHostPort(w.gateway)
	return "https://localhost:" + port + path
}

// rawExchange is one raw HTTP/1.1 request sent over its own TLS
// connection to the gateway, and what came back.
type rawExchange struct {
	status    int
	requestID string
	reason    string // the gateway's refusal reason, if it refused
	err       error  // no response: the connection failed or was closed
}

func (w *wafSetup) sendRaw(req []byte) rawExchange {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", w.gateway, &tls.Config{RootCAs: w.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		return rawExchange{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write(req); err != nil {
		return rawExchange{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return rawExchange{err: err}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return rawExchange{status: resp.StatusCode, requestID: resp.Header.Get("X-Ward-Request-Id"), reason: resp.Header.Get("X-Ward-Deny-Reason")}
}

// records reads the gateway's gateway.request records from its local
// audit log, by request id, waiting until want of them are there.
func (w *wafSetup) records(want int) map[string]auditRecord {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command(wardBin, "audit", "query", "--json", "--type", "gateway.request", "--dir", filepath.Join(w.gwData, "audit")).Output()
		if err != nil {
			w.t.Fatalf("audit query: %v", err)
		}
		recs := map[string]auditRecord{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var r auditRecord
			if line != "" && json.Unmarshal([]byte(line), &r) == nil {
				recs[r.RequestID] = r
			}
		}
		if len(recs) >= want || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(200 * time.Millisecond)
	}
}
