package control_test

import (
	"bytes"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestCAIssuersServesIssuerCertificate (issue 12 finding 12): the AIA
// caIssuers URL of an SVID serves its intermediate's certificate (DER) from
// the public listener, the intermediate's serves the root, and the root's
// CRL named by the intermediate is there too.
func TestCAIssuersServesIssuerCertificate(t *testing.T) {
	ts := startServer(t, nil)
	svid := ts.source(t, "orders").Current()
	leaf, inter := svid.Chain[0], svid.Chain[1]
	fetch := func(url string) (int, string, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}
	if len(leaf.IssuingCertificateURL) != 1 {
		t.Fatalf("SVID caIssuers = %q, want one URL", leaf.IssuingCertificateURL)
	}
	status, ctype, der := fetch(leaf.IssuingCertificateURL[0])
	if status != http.StatusOK || ctype != "application/pkix-cert" || !bytes.Equal(der, inter.Raw) {
		t.Fatalf("GET %s: %d %s, %d bytes; want 200 application/pkix-cert with the intermediate", leaf.IssuingCertificateURL[0], status, ctype, len(der))
	}
	if len(inter.IssuingCertificateURL) != 1 || len(inter.CRLDistributionPoints) != 1 {
		t.Fatalf("intermediate caIssuers %q, CRL distribution points %q", inter.IssuingCertificateURL, inter.CRLDistributionPoints)
	}
	status, _, der = fetch(inter.IssuingCertificateURL[0])
	if status != http.StatusOK || !bytes.Equal(der, ts.bundle.Roots[0].Raw) {
		t.Fatalf("GET %s: %d, %d bytes; want the root", inter.IssuingCertificateURL[0], status, len(der))
	}
	status, _, der = fetch(inter.CRLDistributionPoints[0])
	crl, err := x509.ParseRevocationList(der)
	if status != http.StatusOK || err != nil || crl.CheckSignatureFrom(ts.bundle.Roots[0]) != nil {
		t.Fatalf("GET %s: %d, %v; want a CRL signed by the root", inter.CRLDistributionPoints[0], status, err)
	}
	base := leaf.IssuingCertificateURL[0][:strings.LastIndex(leaf.IssuingCertificateURL[0], "/")+1]
	for _, bad := range []string{"nope.crt", "0123.crt", strings.TrimSuffix(leaf.IssuingCertificateURL[0][len(base):], ".crt")} {
		if status, _, _ := fetch(base + bad); status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", base+bad, status)
		}
	}
}
