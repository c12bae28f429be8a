package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/store/pgtest"
)

// eventually polls cond until it holds or 30s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// serverStatus is the public listener's GET /v1/status ("" when nothing
// answers) and /healthz status code.
func serverStatus(public string) (sealed string, health int) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + public + "/v1/status")
	if err != nil {
		return "", 0
	}
	var st struct {
		Sealed *bool `json:"sealed"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Sealed == nil {
		return "", 0
	}
	sealed = fmt.Sprint(*st.Sealed)
	if h, err := c.Get("http://" + public + "/healthz"); err == nil {
		h.Body.Close()
		health = h.StatusCode
	}
	return sealed, health
}

// TestSealedServerStartsOnKEKFromStdin (issue 16): a server restarted with
// --kek-stdin and no KEK file serves only its sealed status, with its API
// port closed, while a sidecar started before keeps serving on what it
// has; a wrong key leaves it sealed; the right key opens it and the secret
// stored before reads back unchanged.
func TestSealedServerStartsOnKEKFromStdin(t *testing.T) {
	testSealedStart(t)
}

// TestSealedServerStartsOnKEKFromStdinPostgres is the same with the store
// on a real PostgreSQL.
func TestSealedServerStartsOnKEKFromStdinPostgres(t *testing.T) {
	testSealedStart(t, "--store", pgURL(t, pgtest.Start(t)))
}

func testSealedStart(t *testing.T, storeArgs ...string) {
	api, public := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	srv := &serverProc{t: t, dataDir: data, logs: new(lockedBuffer)}
	srv.args = append([]string{"server", "--data-dir", data, "--trust-domain", "example.org", "--listen", api, "--public-listen", public}, storeArgs...)
	t.Cleanup(func() {
		srv.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", srv.logs.String())
		}
	})
	srv.start()
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(wardBin, append(args, "--data-dir", data)...)
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ward %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if st, health := serverStatus(public); st != "false" || health != http.StatusOK {
		t.Fatalf("a running server: /v1/status sealed=%q, /healthz %d", st, health)
	}

	// A mesh: catalog calls orders through two sidecars.
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "orders saw %s", r.URL.Path)
	})}
	go func() { _ = app.Serve(appLn) }()
	t.Cleanup(func() { app.Close() })
	ordersIn, catalogIn, catalogOut := freeAddr(t), freeAddr(t), freeAddr(t)
	// The sidecars read their resources from this file (--config), so
	// orders' address is written here: only sidecars that follow the
	// server learn registered instances.
	meshFile := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(meshFile, []byte(fmt.Sprintf(`apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: [%q]}
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
`, ordersIn)), 0o644); err != nil {
		t.Fatal(err)
	}
	token := func(name string) string {
		return strings.SplitN(run("", "token", "create", "--id", "spiffe://example.org/svc/"+name), "\n", 2)[0]
	}
	common := []string{"--server", "https://" + api, "--bundle", filepath.Join(data, "bundle.pem"), "--config", meshFile}
	startProcess(t, dir, append([]string{"sidecar", "--service", "orders", "--listen", ordersIn, "--app", appLn.Addr().String(),
		"--outbound", "", "--token", token("orders"), "--data-dir", filepath.Join(dir, "orders")}, common...)...)
	startProcess(t, dir, append([]string{"sidecar", "--service", "catalog", "--listen", catalogIn, "--app", freeAddr(t),
		"--outbound", catalogOut, "--token", token("catalog"), "--data-dir", filepath.Join(dir, "catalog")}, common...)...)
	waitListening(t, ordersIn)
	waitListening(t, catalogOut)
	viaMesh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: catalogOut})}}
	call := func() (int, string) {
		resp, err := viaMesh.Get("http://orders/orders/7")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, "the mesh to answer", func() bool { code, _ := call(); return code == http.StatusOK })

	// A secret, stored and read back by orders' identity.
	policy := filepath.Join(dir, "secrets.yaml")
	if err := os.WriteFile(policy, []byte(secretsPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	run("", "apply", "-f", policy)
	value := base64.StdEncoding.EncodeToString([]byte("sealed-test-value-" + time.Now().String()))
	run(value, "secret", "put", "orders/db/password")
	if got := run("", "secret", "get", "orders/db/password", "--identity-dir", filepath.Join(dir, "orders")); got != value {
		t.Fatalf("secret get before the restart = %q, want %q", got, value)
	}

	// Stop it, take its KEK out of the data directory, start it sealed.
	srv.stop()
	kekFile := filepath.Join(data, "kek")
	kek, err := os.ReadFile(kekFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(kekFile); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(data, "client.json"))
	sealed := exec.Command(wardBin, append(srv.args, "--kek-stdin")...)
	var logs lockedBuffer
	sealed.Stdout, sealed.Stderr = &logs, &logs
	keys, err := sealed.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sealed.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sealed.Wait() }()
	t.Cleanup(func() {
		_ = sealed.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = sealed.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sealed server log:\n%s", logs.String())
		}
	})
	stillSealed := func(when string) {
		t.Helper()
		if st, health := serverStatus(public); st != "true" || health != http.StatusServiceUnavailable {
			t.Fatalf("%s: /v1/status sealed=%q, /healthz %d, want sealed and 503", when, st, health)
		}
		c, err := net.DialTimeout("tcp", api, 2*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("%s: the API port accepts connections", when)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: dialling the API port: %v, want connection refused", when, err)
		}
		if _, err := os.Stat(filepath.Join(data, "client.json")); err == nil {
			t.Fatalf("%s: client.json written by a sealed server", when)
		}
		if code, body := call(); code != http.StatusOK || body != "orders saw /orders/7" {
			t.Fatalf("%s: the mesh stopped serving: %d %q", when, code, body)
		}
	}
	eventually(t, "the sealed status", func() bool { st, _ := serverStatus(public); return st == "true" })
	stillSealed("started with --kek-stdin")

	wrong := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if _, err := io.WriteString(keys, wrong+"\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the wrong key's refusal", func() bool { return strings.Contains(logs.String(), "does not open its keys") })
	eventually(t, "the sealed status after a wrong key", func() bool { st, _ := serverStatus(public); return st == "true" })
	stillSealed("after a wrong key")

	if _, err := keys.Write(kek); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the server to unseal", func() bool {
		_, err := os.Stat(filepath.Join(data, "client.json"))
		return err == nil
	})
	if st, health := serverStatus(public); st != "false" || health != http.StatusOK {
		t.Fatalf("unsealed: /v1/status sealed=%q, /healthz %d", st, health)
	}
	if got := run("", "secret", "get", "orders/db/password", "--identity-dir", filepath.Join(dir, "orders")); got != value {
		t.Fatalf("secret get after unsealing = %q, want %q", got, value)
	}
	if _, err := os.Stat(kekFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the KEK given on standard input was written to the data directory: %v", err)
	}
	for _, k := range []string{wrong, strings.TrimSpace(string(kek))} {
		if strings.Contains(logs.String(), k) {
			t.Fatalf("a key was logged:\n%s", logs.String())
		}
	}
	if code, body := call(); code != http.StatusOK || body != "orders saw /orders/7" {
		t.Fatalf("the mesh after unsealing: %d %q", code, body)
	}
}

// TestSealedServerDocWalkthrough runs docs/secrets.md's sealed-server
// example as written.
func TestSealedServerDocWalkthrough(t *testing.T) {
	need(t, "curl", "mkfifo")
	out := runWalkthrough(t, t.TempDir(), docBlock(t, "docs/secrets.md", "## Sealed server"))
	sealed, unsealed := strings.Index(out, `{"sealed":true}`), strings.LastIndex(out, `{"sealed":false}`)
	if sealed < 0 || unsealed < sealed || strings.Count(out, `{"sealed":true}`) != 2 {
		t.Fatalf("want sealed twice, then unsealed:\n%s", out)
	}
	if !strings.Contains(out, "sealed\n503") {
		t.Fatalf("/healthz while sealed is not 503 sealed:\n%s", out)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "unsealed") {
		t.Fatalf("the vault is not unsealed after the server is:\n%s", out)
	}
}
