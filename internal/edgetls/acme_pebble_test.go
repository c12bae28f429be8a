package edgetls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/testport"
)

// freePorts returns n loopback ports reserved for this test process.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		p, err := testport.Port()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	return ports
}

// startProcess starts a program whose output is kept in the test's log on
// failure, and stops it at the end of the test.
func startProcess(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(name), out)
		}
	})
}

func waitForTCP(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, 15*time.Second, addr+" to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestACMEPebble obtains a certificate from a real ACME server (Debian's
// pebble, validating challenges for real, with pebble-challtestsrv as its
// DNS server so that the test names resolve to 127.0.0.1): the first by
// tls-alpn-01 through the TLS listener, then a renewal by http-01 through
// the plain HTTP listener, served without a restart.
func TestACMEPebble(t *testing.T) {
	pebble := requireBinary(t, "pebble", "pebble")
	challtestsrv := requireBinary(t, "pebble-challtestsrv", "pebble")
	began := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()

	// Pebble's own HTTPS (its API and management port) uses a test CA.
	apiCA := newRootCA(t, "pebble API test CA")
	apiCertPEM, apiKeyPEM := pemPair(t, apiCA.issue(t, leafOpts{}))
	apiCertFile, apiKeyFile := filepath.Join(dir, "pebble.crt"), filepath.Join(dir, "pebble.key")
	if err := os.WriteFile(apiCertFile, apiCertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(apiKeyFile, apiKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	// The edge's listeners: pebble validates challenges on their ports.
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 4)
	acmeAddr, mgmtAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	dnsAddr, challMgmtAddr := fmt.Sprintf("127.0.0.1:%d", ports[2]), fmt.Sprintf("127.0.0.1:%d", ports[3])
	config, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  acmeAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    apiCertFile,
		"privateKey":                     apiKeyFile,
		"httpPort":                       httpLn.Addr().(*net.TCPAddr).Port,
		"tlsPort":                        tlsLn.Addr().(*net.TCPAddr).Port,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}})
	if err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(configFile, config, 0o600); err != nil {
		t.Fatal(err)
	}
	// DNS only: every name is 127.0.0.1, no AAAA; its challenge servers off.
	startProcess(t, nil, challtestsrv, "-dns01", dnsAddr, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-management", challMgmtAddr, "-http01", "", "-https01", "", "-tlsalpn01", "")
	startProcess(t, []string{
		"PEBBLE_VA_NOSLEEP=1",      // validate at once
		"PEBBLE_WFE_NONCEREJECT=0", // no random bad-nonce errors
		"PEBBLE_AUTHZREUSE=0",      // the renewal must be validated again
	}, pebble, "-config", configFile, "-dnsserver", dnsAddr)
	waitForTCP(t, acmeAddr)
	waitForTCP(t, mgmtAddr)
	waitForTCP(t, dnsAddr)

	// The ACME source, with a renew-before longer than pebble's 5-year
	// certificates so that each certificate is due as soon as allowed.
	log, logs := newTestLogger(t)
	cacheDir := filepath.Join(dir, "acme")
	domains := []string{"edge.ward.test", "api.edge.ward.test"}
	src, err := NewACMESource(ACMEConfig{
		DirectoryURL: "https://" + acmeAddr + "/dir",
		Email:        "ops@ward.test",
		Domains:      domains,
		CacheDir:     cacheDir,
		RootCAs:      apiCA.pool(),
		RenewBefore:  10 * 365 * 24 * time.Hour,
		Log:          log,
	})
	if err != nil {
		t.Fatal(err)
	}
	src.renew.minGap = 2 * time.Second
	src.challenges = []string{challengeTLSALPN} // the first certificate by tls-alpn-01 only

	// The edge: HTTPS with HSTS, and plain HTTP answering http-01 and
	// redirecting the rest.
	var challengeHits atomic.Int32
	httpsSrv := &http.Server{
		Handler:   HSTS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "edge") })),
		TLSConfig: ServerConfig(src, nil),
		ErrorLog:  stdlog.New(io.Discard, "", 0), // handshakes of pebble's probes
	}
	acmeHTTP := src.HTTPHandler(RedirectHandler(tlsLn.Addr().String(), src))
	httpSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			challengeHits.Add(1)
		}
		acmeHTTP.ServeHTTP(w, r)
	})}
	go func() { _ = httpsSrv.ServeTLS(tlsLn, "", "") }()
	go func() { _ = httpSrv.Serve(httpLn) }()
	t.Cleanup(func() { httpsSrv.Close(); httpSrv.Close() })

	start := time.Now()
	if err := src.Start(ctx); err != nil {
		t.Fatalf("first certificate: %v\nlog:\n%s", err, logs)
	}
	t.Logf("first certificate (tls-alpn-01) in %v", time.Since(start).Round(time.Millisecond))

	// Pebble's issuing root, from its management port.
	apiClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: apiCA.pool()}}}
	defer apiClient.CloseIdleConnections()
	resp, err := apiClient.Get("https://" + mgmtAddr + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %d %v", resp.StatusCode, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble root is not PEM: %q", rootPEM)
	}

	// servedCert dials the edge as a client that trusts only pebble's root.
	servedCert := func(name string) *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", tlsLn.Addr().String(), &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatalf("TLS to the edge as %s, trusting pebble's root: %v", name, err)
		}
		defer c.Close()
		st := c.ConnectionState()
		if st.NegotiatedProtocol != "h2" {
			t.Errorf("ALPN %q, want h2", st.NegotiatedProtocol)
		}
		chain := st.VerifiedChains[0]
		if !bytes.Equal(chain[len(chain)-1].Raw, rootCert(t, rootPEM).Raw) {
			t.Error("verified chain does not end at pebble's root")
		}
		return st.PeerCertificates[0]
	}
	first := servedCert("edge.ward.test")
	servedCert("api.edge.ward.test")
	t.Logf("served %v serial %v, valid until %v", first.DNSNames, first.SerialNumber, first.NotAfter)

	// Over HTTPS the edge answers with HSTS; over HTTP it redirects.
	edgeClient := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, tlsLn.Addr().String())
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer edgeClient.CloseIdleConnections()
	resp, err = edgeClient.Get("https://edge.ward.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") != HSTSValue {
		t.Errorf("HTTPS response without HSTS: %v", resp.Header)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer noFollow.CloseIdleConnections()
	plain, err := http.NewRequest("GET", "http://"+httpLn.Addr().String()+"/x?y=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	plain.Host = "edge.ward.test"
	resp, err = noFollow.Do(plain)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "https://edge.ward.test:" + strconv.Itoa(tlsLn.Addr().(*net.TCPAddr).Port) + "/x?y=1"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("plain HTTP: %d %q, want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	// A name the certificate does not cover is not redirected to.
	resp, err = noFollow.Get("http://" + httpLn.Addr().String() + "/x?y=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("plain HTTP to 127.0.0.1: %d %q, want 400", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Renewal by http-01, served without a restart.
	src.challenges = []string{challengeHTTP} // Run has not started: no race
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(runCtx) }()
	start = time.Now()
	var second *x509.Certificate
	waitFor(t, 60*time.Second, "a renewed certificate to be served", func() bool {
		second = servedCert("edge.ward.test")
		return second.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	t.Logf("renewed (http-01) and served serial %v after %v", second.SerialNumber, time.Since(start).Round(time.Millisecond))
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	if challengeHits.Load() == 0 {
		t.Error("the renewal did not go through the http-01 handler")
	}
	if !strings.Contains(logs.String(), "tls certificate renewed") {
		t.Errorf("renewal not logged:\n%s", logs)
	}

	// The cache: directory 0700, files 0600; a restart serves the cached
	// certificate without a new order.
	checkMode(t, cacheDir, 0o700)
	entries, err := os.ReadDir(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		checkMode(t, filepath.Join(cacheDir, e.Name()), 0o600)
		names = append(names, e.Name())
	}
	if len(entries) != 2 {
		t.Errorf("cache holds %q, want an account key and a certificate", names)
	}
	restarted, err := NewACMESource(ACMEConfig{DirectoryURL: "https://" + acmeAddr + "/dir", Domains: domains, CacheDir: cacheDir, RootCAs: apiCA.pool()})
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Start(ctx); err != nil {
		t.Fatal(err)
	}
	latest := servedSerial(src)
	if got := servedSerial(restarted); got != latest {
		t.Errorf("after a restart serving %s, want the cached %s", got, latest)
	}
	t.Logf("TestACMEPebble took %v", time.Since(began).Round(time.Millisecond))
}

func rootCert(t *testing.T, rootPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(rootPEM)
	if b == nil {
		t.Fatal("pebble root is not PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	return c
}
