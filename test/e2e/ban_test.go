package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const banServices = `---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {protocol: http}
---
apiVersion: ward/v1
kind: Service
metadata: {name: billing}
spec: {protocol: http}
`

// TestBanReachesEveryProxy: `ward ban add` on the loopback network
// reaches three running gateways and two sidecars (real processes that
// follow the server) within a second: each answers 403 banned. With the
// server stopped, every proxy restarts and still enforces the ban from
// its last good snapshot, then lets requests through again once the ban
// expires, on its own clock.
func TestBanReachesEveryProxy(t *testing.T) {
	e := newEdgeSetup(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") }))
	t.Cleanup(app.Close)
	appAddr := strings.TrimPrefix(app.URL, "http://")
	set := filepath.Join(e.dir, "set.yaml")
	raw, err := os.ReadFile(e.serverResources())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(set, append(raw, banServices...), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := ward(t, e.dir, "apply", "-f", set, "--data-dir", e.data); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	key := e.apiKey("shop", "orders")
	bundle := filepath.Join(e.data, "bundle.pem")

	type proxy struct {
		name, addr string
		p          *proc
		call       func() (int, string)
	}
	var proxies []*proxy
	for i := 1; i <= 3; i++ {
		name, addr := fmt.Sprintf("edge%d", i), freeAddr(t)
		args := []string{"gateway", "--name", name, "--listen", addr, "--tls-ward-ca",
			"--data-dir", filepath.Join(e.dir, name), "--server", e.server, "--bundle", bundle}
		p := startProc(t, e.dir, append(args, "--token", e.token("spiffe://example.org/gateway/"+name))...)
		p.args = args
		waitListening(t, addr)
		e.waitReady(addr, key)
		proxies = append(proxies, &proxy{name: name, addr: addr, p: p, call: func() (int, string) {
			status, reason, _ := e.call(addr, "/orders/1", key, "")
			return status, reason
		}})
	}
	for _, name := range []string{"catalog", "billing"} {
		addr, data := freeAddr(t), filepath.Join(e.dir, name)
		args := []string{"sidecar", "--service", name, "--listen", addr, "--app", appAddr, "--outbound", "",
			"--data-dir", data, "--server", e.server, "--bundle", bundle}
		p := startProc(t, e.dir, append(args, "--token", e.token("spiffe://example.org/svc/"+name))...)
		p.args = args
		waitListening(t, addr)
		waitRegistered(t, e.dir, e.data, name, addr)
		px := &proxy{name: name, addr: addr, p: p}
		// The test calls each sidecar with the other one's identity.
		other := map[string]string{"catalog": "billing", "billing": "catalog"}[name]
		px.call = func() (int, string) {
			tr := &http.Transport{TLSClientConfig: svidClientTLS(t, filepath.Join(e.dir, other))}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/x")
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			reason := resp.Header.Get("X-Ward-Deny-Reason")
			if reason == "" && strings.Contains(string(b), `"reason"`) {
				reason = strings.SplitN(strings.SplitN(string(b), `"reason":"`, 2)[1], `"`, 2)[0]
			}
			return resp.StatusCode, reason
		}
		proxies = append(proxies, px)
	}
	// Before the ban: the gateways want a JWT, the sidecars have no policy
	// for the caller; nobody says banned.
	for _, px := range proxies {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			status, reason := px.call()
			if status == 401 || status == 403 && reason != "banned" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready: %d %s", px.name, status, reason)
			}
		}
	}

	ttl := 20 * time.Second
	out, err := ward(t, e.dir, "ban", "add", "--source", "127.0.0.0/8", "--ttl", ttl.String(), "--reason", "e2e", "--data-dir", e.data)
	start := time.Now()
	if err != nil {
		t.Fatalf("ban add: %v\n%s", err, out)
	}
	var expires time.Time
	if _, after, ok := strings.Cut(strings.SplitN(out, "\n", 2)[0], " until "); ok {
		expires, _ = time.Parse(time.RFC3339, strings.TrimSpace(after))
	}
	if expires.IsZero() {
		t.Fatalf("ban add printed no expiry:\n%s", out)
	}
	pending := map[*proxy]bool{}
	for _, px := range proxies {
		pending[px] = true
	}
	for len(pending) > 0 {
		for px := range pending {
			if status, reason := px.call(); status == 403 && reason == "banned" {
				t.Logf("%s enforces the ban %v after the add", px.name, time.Since(start).Round(time.Millisecond))
				delete(pending, px)
			}
		}
		if len(pending) > 0 && time.Since(start) > time.Second {
			for px := range pending {
				status, reason := px.call()
				t.Errorf("%s a second after the ban: %d %s, want 403 banned", px.name, status, reason)
			}
			t.FailNow()
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Without the server, every proxy restarts on its last good snapshot
	// and keeps the ban.
	e.srv.stop()
	for _, px := range proxies {
		px.p.stop()
		px.p.start()
	}
	for _, px := range proxies {
		waitListening(t, px.addr)
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if status, reason := px.call(); status == 403 && reason == "banned" {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("%s after a restart without the server: %d %s, want 403 banned", px.name, status, reason)
			}
		}
	}
	if time.Now().After(expires) {
		t.Fatalf("the restarts took past the ban's expiry (%v): raise the TTL", ttl)
	}

	// At the expiry every proxy lets the caller through again, still
	// without the server.
	time.Sleep(time.Until(expires))
	for _, px := range proxies {
		for deadline := expires.Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
			status, reason := px.call()
			if reason != "banned" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s a second after the ban's expiry: %d %s", px.name, status, reason)
			}
		}
	}
}
