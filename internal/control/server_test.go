package control_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
	"github.com/wardsec/ward/internal/identity"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

type testServer struct {
	*control.Server
	dir      string
	operator *control.Client
	anon     *control.Client
	bundle   *identity.Bundle
}

func startServer(t *testing.T, mod func(*control.ServerConfig)) *testServer {
	t.Helper()
	srv := controltest.Start(t, mod)
	ts := &testServer{Server: srv, dir: srv.DataDir(), bundle: srv.CA.Bundle()}
	cred, err := control.LoadCredential(filepath.Join(ts.dir, control.FileOperator))
	if err != nil {
		t.Fatal(err)
	}
	if ts.operator, err = control.NewClient(srv.URL(), ts.bundle, cred); err != nil {
		t.Fatal(err)
	}
	if ts.anon, err = control.NewClient(srv.URL(), ts.bundle, nil); err != nil {
		t.Fatal(err)
	}
	return ts
}

// reloadOperator reads the bootstrap credential again (the server
// replaces it after an intermediate rotation).
func (ts *testServer) reloadOperator(t *testing.T) {
	t.Helper()
	cred, err := control.LoadCredential(filepath.Join(ts.dir, control.FileOperator))
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(ts.dir, control.FileBundle))
	if err != nil {
		t.Fatal(err)
	}
	if ts.bundle, err = identity.ParseBundlePEM(td, pem); err != nil {
		t.Fatal(err)
	}
	if ts.operator, err = control.NewClient(ts.URL(), ts.bundle, cred); err != nil {
		t.Fatal(err)
	}
}

// source enrolls a workload through the real API.
func (ts *testServer) source(t *testing.T, name string) *identity.Source {
	t.Helper()
	return ts.sourceFor(t, spiffeid.RequireFromSegments(td, "svc", name))
}

// sourceFor enrolls id through the real API.
func (ts *testServer) sourceFor(t *testing.T, id spiffeid.ID) *identity.Source {
	t.Helper()
	return controltest.Enroll(t, ts.Server, id)
}

func TestDataDirFiles(t *testing.T) {
	ts := startServer(t, nil)
	for name, mode := range map[string]os.FileMode{
		control.FileStore: 0o600, control.FileKEK: 0o600, control.FileOperator: 0o600, control.FileBundle: 0o644, ".": 0o700,
	} {
		fi, err := os.Stat(filepath.Join(ts.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	cred, err := os.ReadFile(filepath.Join(ts.dir, control.FileOperator))
	if err != nil || !bytes.Contains(cred, []byte("PRIVATE KEY")) {
		t.Fatalf("operator credential: %v", err)
	}
	// No CA private key material in the store file in the clear.
	db, _ := os.ReadFile(filepath.Join(ts.dir, control.FileStore))
	if bytes.Contains(db, []byte("PRIVATE KEY")) {
		t.Error("PEM private key in the store")
	}
}

func TestOperatorEndpointsNeedOperator(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	if _, err := ts.anon.CreateToken(ctx, "spiffe://example.org/svc/a", time.Minute); apiCode(err) != "no_credential" {
		t.Errorf("anonymous token create: %v", err)
	}
	// A workload SVID is not an operator credential.
	src := ts.source(t, "orders")
	wl, err := control.NewClient(ts.URL(), ts.bundle, src.Current().TLSCertificate())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wl.CreateToken(ctx, "spiffe://example.org/svc/a", time.Minute); apiCode(err) != "not_operator" {
		t.Errorf("workload token create: %v", err)
	}
	if _, err := wl.ListCerts(ctx, "", false); apiCode(err) != "not_operator" {
		t.Errorf("workload list: %v", err)
	}
	if _, err := wl.Rotate(ctx); apiCode(err) != "not_operator" {
		t.Errorf("workload rotate: %v", err)
	}
	// A revoked operator credential stops working at once.
	certs, err := ts.operator.ListCerts(ctx, "spiffe://example.org/user/admin", false)
	if err != nil || len(certs) != 1 {
		t.Fatalf("operator cert: %v %v", certs, err)
	}
	if _, err := ts.operator.Revoke(ctx, control.RevokeRequest{Serial: certs[0].Serial}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.operator.ListCerts(ctx, "", false); apiCode(err) != "revoked" {
		t.Errorf("revoked operator: %v", err)
	}
}

func apiCode(err error) string {
	var ae *control.APIError
	if errors.As(err, &ae) {
		return ae.Code()
	}
	return ""
}

// TestGarbageToEndpoints sends malformed requests to every endpoint an
// unauthenticated client can reach; each gets a clear 4xx (or an OCSP
// malformedRequest) and nothing is issued.
func TestGarbageToEndpoints(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	before, err := ts.operator.ListCerts(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	api := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test client probing the server
	pub := "http://" + ts.PublicAddr()
	big := strings.Repeat("A", 100<<10)
	tests := []struct {
		name, method, url, ctype, body string
		status                         int
		code                           string
	}{
		{"enroll not JSON", "POST", ts.URL() + control.PathEnroll, "application/json", "{{{", 400, "bad_json"},
		{"enroll unknown field", "POST", ts.URL() + control.PathEnroll, "application/json", `{"token":"x","csr":"","admin":true}`, 400, "bad_json"},
		{"enroll two values", "POST", ts.URL() + control.PathEnroll, "application/json", `{"token":"x"}{"token":"y"}`, 400, "bad_json"},
		{"enroll oversized", "POST", ts.URL() + control.PathEnroll, "application/json", `{"token":"` + big + `"}`, 413, "too_large"},
		{"enroll wrong content type", "POST", ts.URL() + control.PathEnroll, "text/plain", `{}`, 415, "bad_content_type"},
		{"enroll csr not base64", "POST", ts.URL() + control.PathEnroll, "application/json", `{"token":"wjt1_x","csr":"!!"}`, 400, "bad_json"},
		{"enroll garbage token", "POST", ts.URL() + control.PathEnroll, "application/json", `{"token":"wjt1_x","csr":"MAA="}`, 401, "token_malformed"},
		{"renew without certificate", "POST", ts.URL() + control.PathRenew, "application/json", `{"csr":"MAA="}`, 401, "no_credential"},
		{"trust feed without certificate", "GET", ts.URL() + control.PathTrust, "", "", 401, "no_credential"},
		{"CRL unknown", "GET", pub + "/crl/abc.crl", "", "", 404, "not_found"},
		{"CRL no suffix", "GET", pub + "/crl/abc", "", "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := api.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), `"code":"`+tt.code+`"`) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
		})
	}
	for _, body := range []string{"", "garbage", big} {
		resp, err := http.Post(pub+control.PathOCSP, "application/ocsp-request", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, []byte{0x30, 0x03, 0x0A, 0x01, 0x01}) {
			t.Errorf("OCSP garbage (%d bytes): answer %x, want malformedRequest", len(body), got)
		}
	}
	resp, err := http.Get(pub + control.PathOCSP + "/%%%")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode/100 == 5 {
			t.Errorf("OCSP GET garbage: %d", resp.StatusCode)
		}
	}
	after, err := ts.operator.ListCerts(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("garbage issued certificates: %d -> %d", len(before), len(after))
	}
}

func TestRenewOverMTLS(t *testing.T) {
	ts := startServer(t, nil)
	src := ts.source(t, "orders")
	old := src.Current()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	svidPEM, _, err := ts.anon.Renew(context.Background(), old.TLSCertificate(), csr)
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := identity.ParseCertsPEM(svidPEM)
	if certs[0].URIs[0].String() != old.ID.String() || certs[0].SerialNumber.Cmp(old.Leaf().SerialNumber) == 0 {
		t.Fatalf("renewed %v", certs[0].URIs)
	}
	// After revocation the same credential cannot renew.
	if _, err := ts.operator.Revoke(context.Background(), control.RevokeRequest{ID: old.ID.String()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ts.anon.Renew(context.Background(), old.TLSCertificate(), csr); apiCode(err) != "revoked" {
		t.Fatalf("revoked renewal: %v", err)
	}
}

func TestServerRefusesOtherTrustDomain(t *testing.T) {
	cfg := control.ServerConfig{
		DataDir: t.TempDir(), TrustDomain: "example.org", Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	srv, err := control.NewServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	cfg.TrustDomain = "other.org"
	_, err = control.NewServer(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "example.org") {
		t.Fatalf("err = %v", err)
	}
}

func TestMetrics(t *testing.T) {
	ts := startServer(t, nil)
	src := ts.source(t, "orders")
	if _, err := ts.operator.Revoke(context.Background(), control.RevokeRequest{Serial: src.Current().Serial()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ts.anon.Enroll(context.Background(), "wjt1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", []byte("x")); err == nil {
		t.Fatal("unknown token enrolled")
	}
	resp, err := http.Get("http://" + ts.PublicAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		"ward_ca_certificates_issued_total 3", // server, operator, orders
		"ward_ca_certificates_revoked_total 1",
		`ward_ca_requests_refused_total{reason="token_unknown"} 1`,
		"ward_ca_certificates_expiring_24h 1", // the server's own certificate; orders is revoked
		`ward_ca_expiry_seconds{authority="`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestSecretsNeverLogged: join tokens, private keys and the KEK never
// appear in the server's log, even at debug level.
func TestSecretsNeverLogged(t *testing.T) {
	var logs syncBuffer
	ts := startServer(t, func(c *control.ServerConfig) {
		c.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	tok, err := ts.operator.CreateToken(context.Background(), "spiffe://example.org/svc/a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewSource(identity.Config{Authority: ts.anon, TrustDomain: td, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Enroll(context.Background(), spiffeid.RequireFromString("spiffe://example.org/svc/a"), tok.Token); err != nil {
		t.Fatal(err)
	}
	_, _, _ = ts.anon.Enroll(context.Background(), tok.Token, []byte("x")) // a refused reuse is logged too
	kek, err := os.ReadFile(filepath.Join(ts.dir, control.FileKEK))
	if err != nil {
		t.Fatal(err)
	}
	text := logs.String()
	if !strings.Contains(text, "ca.enroll") {
		t.Fatalf("the log does not show the enrollment; the test would prove nothing:\n%s", text)
	}
	for name, secret := range map[string]string{
		"join token": tok.Token, "token secret": strings.TrimPrefix(tok.Token, "wjt1_"),
		"KEK": strings.TrimSpace(string(kek)), "private key": "PRIVATE KEY",
	} {
		if strings.Contains(text, secret) {
			t.Errorf("%s found in the log", name)
		}
	}
}

// A key-encryption key that does not open the server's keys is refused
// with ca.ErrWrongKEK (so a sealed server can ask for another) and
// changes nothing: the right key still opens the same data directory.
func TestNewServerRefusesWrongKEK(t *testing.T) {
	right, wrong := make([]byte, 32), make([]byte, 32)
	wrong[0] = 1
	kek := func(b []byte) *ca.KEK {
		k, err := ca.NewKEK(b)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	cfg := control.ServerConfig{
		DataDir: t.TempDir(), TrustDomain: "example.org", Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
		KEK: kek(right), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	srv, err := control.NewServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, control.FileKEK)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a given KEK was written to the data directory: %v", err)
	}
	cfg.KEK = kek(wrong)
	if _, err := control.NewServer(context.Background(), cfg); !errors.Is(err, ca.ErrWrongKEK) {
		t.Fatalf("wrong KEK: err = %v, want ca.ErrWrongKEK", err)
	}
	cfg.KEK = kek(right)
	srv, err = control.NewServer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("the right KEK after a wrong one: %v", err)
	}
	srv.Close()
}

// A wrong KEK changes nothing even where NewServer would write with it: a
// data directory without its audit signing key (as an earlier version
// left it) does not get one sealed with the wrong key.
func TestNewServerWrongKEKWritesNothing(t *testing.T) {
	right, wrong := make([]byte, 32), make([]byte, 32)
	wrong[0] = 1
	rightKEK, _ := ca.NewKEK(right)
	wrongKEK, _ := ca.NewKEK(wrong)
	cfg := control.ServerConfig{
		DataDir: t.TempDir(), TrustDomain: "example.org", Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
		KEK: rightKEK, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	srv, err := control.NewServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	keyFile := filepath.Join(cfg.DataDir, control.FileAuditKey)
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	cfg.KEK = wrongKEK
	if _, err := control.NewServer(context.Background(), cfg); !errors.Is(err, ca.ErrWrongKEK) {
		t.Fatalf("wrong KEK: err = %v, want ca.ErrWrongKEK", err)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a wrong KEK sealed a new audit key: %v", err)
	}
}
