package control_test

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardsec/ward/internal/control"
)

// These tests check Ward's PKI with an implementation we did not write:
// the openssl command line.

func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not found: install the openssl package (the test command does this)")
	}
	return p
}

func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(opensslPath(t), args...).CombinedOutput()
	return string(out), err
}

func writePEM(t *testing.T, path string, ders ...[]byte) {
	t.Helper()
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenSSLInterop(t *testing.T) {
	ts := startServer(t, nil)
	src := ts.source(t, "orders")
	svid := src.Current()
	dir := t.TempDir()
	leaf, inter, root := filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "inter.pem"), filepath.Join(dir, "root.pem")
	writePEM(t, leaf, svid.Chain[0].Raw)
	writePEM(t, inter, svid.Chain[1].Raw)
	writePEM(t, root, ts.bundle.Roots[0].Raw)

	if out, err := openssl(t, "verify", "-CAfile", root, "-untrusted", inter, leaf); err != nil || !strings.Contains(out, "leaf.pem: OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	crlURL := svid.Leaf().CRLDistributionPoints[0]
	ocspURL := svid.Leaf().OCSPServer[0]
	fetchCRL := func() string {
		resp, err := http.Get(crlURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		der, _ := io.ReadAll(resp.Body)
		p := filepath.Join(dir, "crl.der")
		if err := os.WriteFile(p, der, 0o644); err != nil {
			t.Fatal(err)
		}
		pemPath := filepath.Join(dir, "crl.pem")
		if out, err := openssl(t, "crl", "-inform", "DER", "-in", p, "-out", pemPath); err != nil {
			t.Fatalf("openssl crl cannot read Ward's CRL: %v\n%s", err, out)
		}
		return pemPath
	}
	verifyCRL := func() (string, error) {
		return openssl(t, "verify", "-crl_check", "-CRLfile", fetchCRL(), "-CAfile", root, "-untrusted", inter, leaf)
	}
	ocsp := func() string {
		out, err := openssl(t, "ocsp", "-issuer", inter, "-cert", leaf, "-CAfile", root, "-url", ocspURL, "-no_nonce")
		if err != nil {
			t.Fatalf("openssl ocsp: %v\n%s", err, out)
		}
		return out
	}
	if out, err := verifyCRL(); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("CRL check of a valid leaf: %v\n%s", err, out)
	}
	if out := ocsp(); !strings.Contains(out, "Response verify OK") || !strings.Contains(out, "leaf.pem: good") {
		t.Fatalf("OCSP before revocation:\n%s", out)
	}

	if _, err := ts.operator.Revoke(context.Background(), control.RevokeRequest{Serial: svid.Serial(), Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	if out, err := verifyCRL(); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Fatalf("CRL check of a revoked leaf passed: %v\n%s", err, out)
	}
	if out := ocsp(); !strings.Contains(out, "Response verify OK") || !strings.Contains(out, "leaf.pem: revoked") || !strings.Contains(out, "keyCompromise") {
		t.Fatalf("OCSP after revocation:\n%s", out)
	}
}
