package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestNewCSR(t *testing.T) {
	id := svc("orders")
	key, der, err := NewCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() {
		t.Errorf("URIs = %v, want [%s]", csr.URIs, id)
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) != 0 || len(csr.Subject.Names) != 0 || len(csr.Extensions) != 1 {
		t.Errorf("csr carries more than the URI SAN: subject %q, dns %v, email %v, ip %v, %d extensions",
			csr.Subject, csr.DNSNames, csr.EmailAddresses, csr.IPAddresses, len(csr.Extensions))
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() || !pub.Equal(csr.PublicKey) {
		t.Errorf("key is %T, want the CSR's ECDSA P-256 key", key.Public())
	}
	if _, der, err := NewCSR(spiffeid.ID{}); err != nil {
		t.Fatal(err)
	} else if csr, _ := x509.ParseCertificateRequest(der); csr == nil || len(csr.URIs) != 0 || len(csr.Extensions) != 0 {
		t.Errorf("csr for a zero ID should carry no name: %+v", csr)
	}
}

func TestSaveLoadSVID(t *testing.T) {
	ca := newFakeCA(t)
	src := newSource(t, ca, svc("orders"))
	dir := filepath.Join(t.TempDir(), "id")
	if err := SaveSVID(dir, src.Current(), src.Bundle()); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("dir holds %d entries, want svid, key and bundle only", len(entries))
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v, want 0600", err, fi.Mode())
	}
	svid, bundle, err := LoadSVID(dir)
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != svc("orders") || svid.Serial() != src.Current().Serial() || len(svid.Chain) != 2 || len(bundle.Intermediates) != 1 {
		t.Fatalf("loaded %s serial %s chain %d, bundle %d intermediates", svid.ID, svid.Serial(), len(svid.Chain), len(bundle.Intermediates))
	}
	if !svid.Key.Public().(*ecdsa.PublicKey).Equal(src.Current().Key.Public()) {
		t.Fatal("loaded key differs from the saved one")
	}

	tests := []struct {
		name    string
		spoil   func(t *testing.T, dir string)
		wantErr string
	}{
		{"key of another svid", func(t *testing.T, dir string) {
			der, _ := x509.MarshalPKCS8PrivateKey(newKey(t))
			writeFile(t, filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		}, "private key does not match the certificate of spiffe://example.org/svc/orders"},
		{"key readable by others", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, KeyFile), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "is accessible by others (mode 0644), expected 0600"},
		{"key not PKCS#8", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, KeyFile), []byte("-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n"), 0o600)
		}, "expected exactly one PKCS#8 PRIVATE KEY block"},
		{"missing bundle", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, BundleFile)); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := SaveSVID(dir, src.Current(), src.Bundle()); err != nil {
				t.Fatal(err)
			}
			tt.spoil(t, dir)
			if _, _, err := LoadSVID(dir); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadSVID error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}

// tamperedAuthority answers enrollments with enroll.
type tamperedAuthority struct {
	*fakeCA
	enroll func(csr *x509.CertificateRequest) (svidPEM, bundlePEM []byte)
}

func (a tamperedAuthority) Enroll(_ context.Context, _ string, der []byte) ([]byte, []byte, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, err
	}
	s, b := a.enroll(csr)
	return s, b, nil
}

func TestEnrollChecksTheAnswer(t *testing.T) {
	ca, other := newFakeCA(t), newFakeCA(t)
	id := svc("orders")
	now := time.Now()
	issue := func(ca *fakeCA, id spiffeid.ID, pub any) []byte {
		return certsPEM(ca.leaf(ca.active, id, pub, now.Add(-time.Minute), now.Add(time.Hour)), ca.active.cert)
	}
	tests := []struct {
		name    string
		enroll  func(csr *x509.CertificateRequest) ([]byte, []byte)
		wantErr string
	}{
		{"another SPIFFE ID", func(csr *x509.CertificateRequest) ([]byte, []byte) {
			return issue(ca, svc("admin"), csr.PublicKey), ca.bundle().PEM()
		}, "authority issued an svid for spiffe://example.org/svc/admin, expected spiffe://example.org/svc/orders"},
		{"another key", func(*x509.CertificateRequest) ([]byte, []byte) {
			return issue(ca, id, newKey(t).Public()), ca.bundle().PEM()
		}, "private key does not match the certificate"},
		{"not chaining to the bundle", func(csr *x509.CertificateRequest) ([]byte, []byte) {
			return issue(other, id, csr.PublicKey), ca.bundle().PEM()
		}, "does not verify against its bundle"},
		{"not PEM", func(*x509.CertificateRequest) ([]byte, []byte) {
			return []byte("garbage"), ca.bundle().PEM()
		}, "authority returned an invalid svid"},
		{"bundle without root", func(csr *x509.CertificateRequest) ([]byte, []byte) {
			return issue(ca, id, csr.PublicKey), certsPEM(ca.active.cert)
		}, "authority returned an invalid bundle: bundle has no root certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSource(Config{TrustDomain: td, Authority: tamperedAuthority{ca, tt.enroll}, Logger: testLogger(t), Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Enroll(t.Context(), id, "tok")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Enroll error = %v, want %q", err, tt.wantErr)
			}
			if s.Current() != nil || s.Bundle() != nil {
				t.Error("a refused answer became current")
			}
		})
	}
}

func TestLoadOrEnroll(t *testing.T) {
	ca := newFakeCA(t)
	id := svc("orders")
	dir := t.TempDir()
	start := func(now func() time.Time) *Source {
		s, err := NewSource(Config{TrustDomain: td, Authority: ca, Dir: dir, Logger: testLogger(t), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	first := start(nil)
	if err := first.LoadOrEnroll(t.Context(), id, ""); err == nil || !strings.Contains(err.Error(), "no usable svid for spiffe://example.org/svc/orders and no join token") {
		t.Fatalf("empty dir, no token: error = %v", err)
	}
	if err := first.LoadOrEnroll(t.Context(), id, ca.token(id)); err != nil {
		t.Fatal(err)
	}

	// A restart reuses the persisted SVID without a token.
	second := start(nil)
	if err := second.LoadOrEnroll(t.Context(), id, ""); err != nil {
		t.Fatal(err)
	}
	if second.Current().Serial() != first.Current().Serial() {
		t.Fatal("restart did not reuse the persisted svid")
	}
	if err := start(nil).LoadOrEnroll(t.Context(), svc("other"), ""); err == nil || !strings.Contains(err.Error(), "persisted svid is for spiffe://example.org/svc/orders, not spiffe://example.org/svc/other") {
		t.Fatalf("other id: error = %v", err)
	}

	// Two hours later the persisted SVID has expired: enroll again.
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	ca.setTTL(24 * time.Hour)
	if err := start(later).LoadOrEnroll(t.Context(), id, ""); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("expired, no token: error = %v", err)
	}
	third := start(later)
	if err := third.LoadOrEnroll(t.Context(), id, ca.token(id)); err != nil {
		t.Fatal(err)
	}
	if third.Current().Serial() == first.Current().Serial() {
		t.Fatal("expired svid was reused")
	}
	if svid, _, err := LoadSVID(dir); err != nil || svid.Serial() != third.Current().Serial() {
		t.Fatalf("new svid not persisted: %v", err)
	}

	// A zero ID takes the one the token is bound to.
	byToken := start(nil)
	if err := byToken.Enroll(t.Context(), spiffeid.ID{}, ca.token(svc("billing"))); err != nil || byToken.Current().ID != svc("billing") {
		t.Fatalf("enroll by token: %v", err)
	}

	// Load refuses an SVID of another trust domain.
	foreign, _ := NewSource(Config{TrustDomain: spiffeid.RequireTrustDomainFromString("other.org")})
	if err := foreign.Load(dir); err == nil || !strings.Contains(err.Error(), "is not in trust domain other.org") {
		t.Fatalf("foreign Load error = %v", err)
	}
}

func TestSourceMisuse(t *testing.T) {
	if _, err := NewSource(Config{}); err == nil {
		t.Error("NewSource accepted an empty trust domain")
	}
	bare, _ := NewSource(Config{TrustDomain: td})
	if err := bare.Run(t.Context()); !errors.Is(err, errNoAuthority) {
		t.Errorf("Run without authority: %v", err)
	}
	if err := bare.Enroll(t.Context(), svc("a"), "tok"); !errors.Is(err, errNoAuthority) {
		t.Errorf("Enroll without authority: %v", err)
	}
	unenrolled, _ := NewSource(Config{TrustDomain: td, Authority: newFakeCA(t)})
	if err := unenrolled.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "enroll or load first") {
		t.Errorf("Run without svid: %v", err)
	}
	if err := unenrolled.Enroll(t.Context(), spiffeid.RequireFromString("spiffe://other.org/svc/a"), "tok"); err == nil || !strings.Contains(err.Error(), "not in trust domain example.org") {
		t.Errorf("Enroll in another trust domain: %v", err)
	}
	if _, err := unenrolled.certificate(); err == nil {
		t.Error("an unenrolled source presented a certificate")
	}
	if err := unenrolled.SetBundle(newFakeCA(t).bundle()); err != nil {
		t.Error(err)
	}
	otherBundle, _ := NewBundle(spiffeid.RequireTrustDomainFromString("other.org"), newFakeCA(t).bundle().Roots)
	if err := unenrolled.SetBundle(otherBundle); err == nil {
		t.Error("SetBundle accepted another trust domain's bundle")
	}
}
