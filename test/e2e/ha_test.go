package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/store/pgtest"
)

// TestTwoServersOnPostgres runs two `ward server` processes on one real
// PostgreSQL: a change applied on one reaches a sidecar watching the other
// within a second (LISTEN/NOTIFY); exactly one leads the once-only jobs;
// when the server a sidecar watches dies it fails over to the other and
// keeps receiving changes, and the other takes the lead.
func TestTwoServersOnPostgres(t *testing.T) {
	dsn := pgURL(t, pgtest.Start(t))
	dir := t.TempDir()
	newServer := func(name string, extra ...string) (*serverProc, string, string) {
		api, pub := freeAddr(t), freeAddr(t)
		s := &serverProc{t: t, dataDir: filepath.Join(dir, name), logs: new(lockedBuffer)}
		s.args = append([]string{"server", "--data-dir", s.dataDir, "--trust-domain", "example.org", "--listen", api, "--public-listen", pub, "--store", dsn}, extra...)
		t.Cleanup(func() {
			s.stop()
			if t.Failed() {
				t.Logf("server %s log:\n%s", name, s.logs.String())
			}
		})
		s.start()
		return s, "https://" + api, "http://" + pub
	}
	a, aURL, aPub := newServer("a")
	b, bURL, bPub := newServer("b", "--kek-file", filepath.Join(dir, "a", "kek"))
	cli := func(args ...string) string {
		t.Helper()
		out, err := ward(t, dir, append(args, "--data-dir", a.dataDir)...)
		if err != nil {
			t.Fatalf("ward %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	leader := func(pub string) bool {
		resp, err := http.Get(pub + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), "\nward_server_leader 1")
	}
	waitFor := func(what string, within time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > within {
				t.Fatalf("%s: not within %s", what, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}
	waitFor("a leader", 10*time.Second, func() bool { return leader(aPub) || leader(bPub) })
	if leader(aPub) == leader(bPub) {
		t.Fatalf("leaders: a %v, b %v; want exactly one", leader(aPub), leader(bPub))
	}

	ordersIn, catalogIn, catalogOut := freeAddr(t), freeAddr(t), freeAddr(t)
	mesh := func(methods string) string {
		path := filepath.Join(dir, "mesh.yaml")
		if err := os.WriteFile(path, fmt.Appendf(nil, controlMesh, methods), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cli("apply", "-f", mesh("GET"))
	appAddr := freeAddr(t)
	app := &http.Server{Addr: appAddr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })}
	go func() { _ = app.ListenAndServe() }()
	defer app.Close()
	token := func(name string) string {
		return strings.SplitN(cli("token", "create", "--id", "spiffe://example.org/svc/"+name), "\n", 2)[0]
	}
	bundle := filepath.Join(a.dataDir, "bundle.pem")
	// orders' sidecar, which enforces, watches b first; catalog's a.
	startProc(t, dir, "sidecar", "--service", "orders", "--listen", ordersIn, "--app", appAddr, "--outbound", "",
		"--token", token("orders"), "--data-dir", filepath.Join(dir, "orders"), "--server", bURL+","+aURL, "--bundle", bundle)
	startProc(t, dir, "sidecar", "--service", "catalog", "--listen", catalogIn, "--app", freeAddr(t), "--outbound", catalogOut,
		"--token", token("catalog"), "--data-dir", filepath.Join(dir, "catalog"), "--server", aURL+","+bURL, "--bundle", bundle)
	waitListening(t, ordersIn)
	waitListening(t, catalogOut)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: catalogOut}), DisableKeepAlives: true}}
	status := func(method string) int {
		req, _ := http.NewRequest(method, "http://orders/orders/1", nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitRegistered(t, dir, a.dataDir, "orders", ordersIn)
	waitFor("GET allowed", 10*time.Second, func() bool { return status("GET") == 200 })
	if got := status("DELETE"); got != 403 {
		t.Fatalf("DELETE: %d", got)
	}

	// Applied on a, enforced by a sidecar watching b.
	cli("apply", "-f", mesh("GET, DELETE"))
	t.Logf("applied on server a, enforced by the sidecar watching b in %s", waitFor("DELETE allowed", time.Second, func() bool { return status("DELETE") == 200 }))

	// b dies: orders' sidecar fails over to a; the lead moves to a if b had it.
	b.stop()
	took := waitFor("a leads", 15*time.Second, func() bool { return leader(aPub) })
	t.Logf("a leads %s after b stopped", took)
	cli("apply", "-f", mesh("GET"))
	t.Logf("with b down, a change on a reached the sidecar in %s", waitFor("DELETE denied again", 15*time.Second, func() bool { return status("DELETE") == 403 }))
}

// pgURL turns a key=value DSN into the postgres:// URL `ward server --store` takes.
func pgURL(t *testing.T, dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return dsn
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(f, "=")
		kv[k] = v
	}
	u := url.URL{Scheme: "postgres", Host: kv["host"] + ":" + kv["port"], Path: "/" + kv["dbname"], User: url.User(kv["user"])}
	u.RawQuery = "sslmode=disable"
	return u.String()
}
