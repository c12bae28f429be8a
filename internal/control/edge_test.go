package control_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/control"
)

// TestEdgeCertificate: a gateway gets a serving certificate for allowed
// names that a TLS client trusting the bundle accepts; other names and
// other callers are refused and nothing is issued.
func TestEdgeCertificate(t *testing.T) {
	events := &audit.Recorder{}
	ts := startServer(t, func(c *control.ServerConfig) {
		c.EdgeNames = []string{"*.example.com", "localhost", "127.0.0.1"}
		c.Events = events
	})
	ctx := context.Background()
	gw := ts.gatewayClient(t, "edge")
	key := p256(t)

	cert, err := gw.EdgeCertificate(ctx, key, []string{"api.example.com", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if len(cert.Certificate) != 2 || len(leaf.URIs) != 0 || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Fatalf("edge certificate: %d certs, URIs %v, EKU %v", len(cert.Certificate), leaf.URIs, leaf.ExtKeyUsage)
	}
	if d := time.Until(leaf.NotAfter); d > control.EdgeCertTTL || d < control.EdgeCertTTL-time.Minute {
		t.Errorf("lifetime %s, want %s", d, control.EdgeCertTTL)
	}

	// A real TLS client trusting only the bundle's roots accepts it.
	roots := x509.NewCertPool()
	for _, r := range ts.bundle.Roots {
		roots.AddCert(r)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "edge") }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "api.example.com"}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://127.0.0.1:" + port + "/")
	if err != nil {
		t.Fatalf("TLS client trusting the bundle refuses the edge certificate: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "edge" {
		t.Fatalf("body %q", body)
	}

	// In the inventory under the gateway, so it can be revoked.
	certs, err := ts.operator.ListCerts(ctx, "spiffe://example.org/gateway/edge", false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range certs {
		found = found || c.Serial == ca.SerialText(leaf.SerialNumber)
	}
	if !found {
		t.Fatalf("edge certificate %s not in the inventory %+v", ca.SerialText(leaf.SerialNumber), certs)
	}

	before, err := ts.operator.ListCerts(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	svc := ts.client(t, ts.source(t, "orders").Current().TLSCertificate())
	for _, tt := range []struct {
		name   string
		client *control.Client
		names  []string
		status int
		code   string
		says   string
	}{
		{"name not allowed", gw, []string{"api.example.com", "evil.org"}, 403, "name_not_allowed", `"evil.org"`},
		{"two labels under the wildcard", gw, []string{"a.b.example.com"}, 403, "name_not_allowed", `"a.b.example.com"`},
		{"the wildcard's parent", gw, []string{"example.com"}, 403, "name_not_allowed", `"example.com"`},
		{"IP not allowed", gw, []string{"10.0.0.1"}, 403, "name_not_allowed", `"10.0.0.1"`},
		{"no names", gw, nil, 400, "bad_names", "at least one"},
		{"malformed name", gw, []string{"bad_name.example.com"}, 400, "bad_names", "bad_name.example.com"},
		{"workload", svc, []string{"api.example.com"}, 403, "not_gateway", "not a gateway"},
		{"operator", ts.operator, []string{"api.example.com"}, 403, "not_gateway", "not a gateway"},
		{"anonymous", ts.anon, []string{"api.example.com"}, 401, "no_credential", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.client.EdgeCertificate(ctx, key, tt.names)
			var ae *control.APIError
			if !errors.As(err, &ae) || ae.Status != tt.status || ae.Code() != tt.code || !strings.Contains(ae.Body.Message, tt.says) {
				t.Fatalf("got %v, want %d %s saying %s", err, tt.status, tt.code, tt.says)
			}
		})
	}
	if _, err := gw.Raw(ctx, http.MethodPost, control.PathEdgeCert, control.EdgeCertRequest{CSR: []byte("garbage"), Names: []string{"localhost"}}); apiCode(err) != "bad_csr" {
		t.Errorf("garbage CSR: %v", err)
	}
	after, err := ts.operator.ListCerts(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before)+1 { // orders' SVID
		t.Fatalf("refusals issued certificates: %d -> %d", len(before), len(after))
	}
	refused := 0
	for _, e := range events.Events() {
		if e.Type == "ca.edge" && e.Decision == "deny" {
			refused++
		}
	}
	if refused != 7 { // the gateway's six refusals and the garbage CSR
		t.Errorf("%d edge refusals audited, want 7", refused)
	}
}

func TestServerRefusesBadEdgeNames(t *testing.T) {
	for _, bad := range [][]string{{"*"}, {"exa mple.com"}, {"*.com"}, {"a.*.example.com"}} {
		_, err := control.NewServer(context.Background(), control.ServerConfig{
			DataDir: t.TempDir(), TrustDomain: "example.org", Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
			EdgeNames: bad, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err == nil || !strings.Contains(err.Error(), "--edge-names") {
			t.Errorf("--edge-names %q: %v", bad, err)
		}
	}
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
