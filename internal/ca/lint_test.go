package ca_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/ocsp"

	"github.com/wardsec/ward/internal/ca"
)

// TestIssuedCertificatesLintClean (issue 12 finding 12): an SVID, the
// intermediate that signs it, the root and a gateway's edge certificate
// pass zlint with no error or warning, except lints listed here that apply
// only to the Web PKI.
func TestIssuedCertificatesLintClean(t *testing.T) {
	f := newFixture(t)
	svid, _ := f.enroll(t, "spiffe://example.org/svc/orders")
	inter := svid.Chain[1]
	root := rootOf(t, f)
	edge, err := f.ca.IssueEdge(context.Background(), spiffeid.RequireFromString("spiffe://example.org/gateway/edge"),
		p256(t).Public(), []string{"api.example.com", "127.0.0.1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
	}{{"svid", svid.Cert}, {"intermediate", inter}, {"root", root}, {"edge", edge.Cert}} {
		t.Run(tc.name, func(t *testing.T) {
			zc, err := zx509.ParseCertificate(tc.cert.Raw)
			if err != nil {
				t.Fatal(err)
			}
			rs := zlint.LintCertificate(zc)
			passed := 0
			for _, r := range rs.Results {
				if r.Status == lint.Pass {
					passed++
				}
			}
			if passed < 20 {
				t.Fatalf("zlint passed only %d lints: it did not run", passed)
			}
			var bad []string
			for name, r := range rs.Results {
				if r.Status < lint.Warn || r.Status == lint.NA || webPKIOnly[name] {
					continue
				}
				bad = append(bad, name+" ("+r.Status.String()+": "+r.Details+")")
			}
			slices.Sort(bad)
			if len(bad) > 0 {
				t.Fatalf("zlint on the %s:\n%s", tc.name, strings.Join(bad, "\n"))
			}
		})
	}
}

// TestCRLsLintClean (issue 12 finding 12): the CRLs the root and the
// intermediate sign pass zlint's CRL lints.
func TestCRLsLintClean(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, _ := f.enroll(t, "spiffe://example.org/svc/a")
	if _, err := f.ca.RevokeSerial(ctx, ca.SerialText(a.Cert.SerialNumber), 1, "test"); err != nil {
		t.Fatal(err)
	}
	for name, id := range map[string]string{"intermediate": hexID(a.Chain[1]), "root": hexID(rootOf(t, f))} {
		der, err := f.ca.CRL(ctx, id)
		if err != nil {
			t.Fatalf("%s CRL: %v", name, err)
		}
		rl, err := zx509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		rs := zlint.LintRevocationList(rl)
		if len(rs.Results) == 0 {
			t.Fatal("zlint ran no CRL lint")
		}
		for lname, r := range rs.Results {
			if r.Status >= lint.Warn && r.Status != lint.NA {
				t.Errorf("zlint on the %s CRL: %s (%s: %s)", name, lname, r.Status, r.Details)
			}
		}
	}
}

// rootOf returns the CA's root certificate.
func rootOf(t *testing.T, f *fixture) *x509.Certificate {
	t.Helper()
	auths, certs, err := f.ca.Authorities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range auths {
		if a.Kind == "root" {
			return certs[i]
		}
	}
	t.Fatal("no root")
	return nil
}

// webPKIOnly are zlint lints that check the CA/Browser Forum's rules for
// publicly trusted TLS certificates. Ward's CA is a private SPIFFE PKI: its
// certificates are trusted only through the trust bundle Ward distributes.
// Each entry says why it does not apply; anything else zlint reports fails.
var webPKIOnly = map[string]bool{
	// BRs 7.1.4.2.1 allow only DNS names and IP addresses in the SAN; an
	// X.509-SVID carries its SPIFFE ID as a URI SAN (SPIFFE X509-SVID §2),
	// and a CA certificate its trust domain's.
	"e_ext_san_uniform_resource_identifier_present": true,
	// BRs 7.1.2.3 and 7.1.2.10.5: certificatePolicies with a CA/Browser
	// Forum policy OID; Ward asserts adherence to no public CP/CPS.
	"e_sub_cert_cert_policy_empty":            true,
	"e_sub_cert_certificate_policies_missing": true,
	"e_sub_ca_certificate_policies_missing":   true,
	"e_invalid_ca_certificate_policies":       true,
	// BRs 7.1.4.2.2 and 7.1.2.10.2: a validated postal subject (country,
	// province or locality) beside the organization; Ward's subjects name
	// no legal entity, the URI SAN is the identity.
	"e_sub_cert_country_name_must_appear":  true,
	"e_sub_cert_locality_name_must_appear": true,
	"e_sub_cert_province_must_appear":      true,
	"e_ca_country_name_missing":            true,
	// BRs 7.1.2.7.6 (ballot SC62) advise against an SKI in subscriber
	// certificates; RFC 5280 4.2.1.2 says SHOULD include it, and zlint's
	// RFC 5280 lint w_ext_subject_key_identifier_missing_sub_cert holds Ward to it.
	"w_ext_subject_key_identifier_not_recommended_subscriber": true,
	// BRs 7.1.2.10.3: a public CA's AIA must not use internal names; Ward's
	// public URL is the server's address inside the mesh (here 127.0.0.1).
	"w_sub_cert_aia_contains_internal_names": true,
	// BRs 7.1.4.2.1: no reserved IP address in a public certificate; an
	// edge certificate of a private gateway may name a loopback or
	// private-range address it listens on.
	"e_ext_san_contains_reserved_ip": true,
	// BRs 7.1.2.1: no pathLenConstraint in a root; Ward's root sets it to 1
	// on purpose, so that an intermediate can never sign another CA.
	"w_root_ca_basic_constraints_path_len_constraint_field_present": true,
}

// TestSVIDCarriesSubjectKeyIDAndCAIssuers (issue 12 finding 12): an SVID
// names its key (SKI, RFC 7093 method 1) and where its issuer's certificate
// is served (AIA caIssuers), next to its CRL and OCSP addresses.
func TestSVIDCarriesSubjectKeyIDAndCAIssuers(t *testing.T) {
	f := newFixture(t)
	svid, _ := f.enroll(t, "spiffe://example.org/svc/orders")
	leaf, inter := svid.Cert, svid.Chain[1]
	spki := struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}{}
	if _, err := asn1.Unmarshal(leaf.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	if !bytes.Equal(leaf.SubjectKeyId, sum[:20]) {
		t.Errorf("SVID subject key ID = %x, want %x", leaf.SubjectKeyId, sum[:20])
	}
	if !bytes.Equal(leaf.AuthorityKeyId, inter.SubjectKeyId) {
		t.Errorf("SVID authority key ID %x is not the intermediate's %x", leaf.AuthorityKeyId, inter.SubjectKeyId)
	}
	want := "http://127.0.0.1:8441/ca/" + hexID(inter) + ".crt"
	if !slices.Equal(leaf.IssuingCertificateURL, []string{want}) {
		t.Errorf("SVID caIssuers = %q, want [%q]", leaf.IssuingCertificateURL, want)
	}
	der, err := f.ca.AuthorityCertificate(hexID(inter))
	if err != nil || !bytes.Equal(der, inter.Raw) {
		t.Errorf("AuthorityCertificate(intermediate) = %d bytes, %v; want the intermediate", len(der), err)
	}
	if _, err := f.ca.AuthorityCertificate("nope"); code(err) != "not_found" {
		t.Errorf("AuthorityCertificate(unknown) = %v, want not_found", err)
	}
}

// TestIntermediateCarriesCRLDistributionPoint (issue 12 finding 12): an
// intermediate Ward makes points to its root's CRL, which the root signs,
// and to the root's certificate (AIA caIssuers).
func TestIntermediateCarriesCRLDistributionPoint(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	svid, _ := f.enroll(t, "spiffe://example.org/svc/orders")
	inter, root := svid.Chain[1], rootOf(t, f)
	wantCRL := "http://127.0.0.1:8441/crl/" + hexID(root) + ".crl"
	if !slices.Equal(inter.CRLDistributionPoints, []string{wantCRL}) {
		t.Fatalf("intermediate CRL distribution points = %q, want [%q]", inter.CRLDistributionPoints, wantCRL)
	}
	wantCRT := "http://127.0.0.1:8441/ca/" + hexID(root) + ".crt"
	if !slices.Equal(inter.IssuingCertificateURL, []string{wantCRT}) {
		t.Errorf("intermediate caIssuers = %q, want [%q]", inter.IssuingCertificateURL, wantCRT)
	}
	der, err := f.ca.CRL(ctx, hexID(root))
	if err != nil {
		t.Fatalf("root CRL: %v", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil || crl.CheckSignatureFrom(root) != nil || len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("root CRL: %v, %d entries", err, len(crl.RevokedCertificateEntries))
	}
	// A rotated intermediate carries them too.
	next, err := f.ca.Rotate(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := x509.ParseCertificate(next.CertDER)
	if err != nil || !slices.Equal(nc.CRLDistributionPoints, []string{wantCRL}) {
		t.Fatalf("rotated intermediate CRL distribution points = %q (%v)", nc.CRLDistributionPoints, err)
	}
}

// TestOCSPThisUpdateNotBeforeRevocation: like the CRL (zlint's
// e_crl_revocation_time_after_this_update), an OCSP answer for a revoked
// certificate does not date its status before the revocation it reports.
func TestOCSPThisUpdateNotBeforeRevocation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, _ := f.enroll(t, "spiffe://example.org/svc/a")
	if _, err := f.ca.RevokeSerial(ctx, ca.SerialText(a.Cert.SerialNumber), 1, "test"); err != nil {
		t.Fatal(err)
	}
	req, err := ocsp.CreateRequest(a.Cert, a.Chain[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := f.ca.OCSP(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ocsp.ParseResponseForCert(der, a.Cert, a.Chain[1])
	if err != nil || resp.Status != ocsp.Revoked {
		t.Fatalf("OCSP: %v, status %d", err, resp.Status)
	}
	if resp.RevokedAt.After(resp.ThisUpdate) {
		t.Fatalf("OCSP thisUpdate %s is before the revocation time %s it reports", resp.ThisUpdate, resp.RevokedAt)
	}
}
