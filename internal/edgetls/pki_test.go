package edgetls

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// testCA is a CA of the tests: a self-signed root, or an intermediate.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newRootCA returns a self-signed root valid for two years.
func newRootCA(t testing.TB, name string) *testCA {
	t.Helper()
	return newCA(t, name, time.Now().Add(-time.Hour), time.Now().Add(2*365*24*time.Hour), nil)
}

// intermediate returns a CA signed by ca, valid as long as ca.
func (ca *testCA) intermediate(t testing.TB, name string) *testCA {
	t.Helper()
	return newCA(t, name, ca.cert.NotBefore, ca.cert.NotAfter, ca)
}

// newCA returns a CA signed by parent, or self-signed if parent is nil.
func newCA(t testing.TB, name string, notBefore, notAfter time.Time, parent *testCA) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Ward tests"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        parent != nil,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// leafOpts shapes a leaf certificate.
type leafOpts struct {
	notBefore, notAfter time.Time // default: now-1m .. now+200 days
	names               []string  // DNS names; default localhost
	ips                 []net.IP  // default 127.0.0.1
	client              bool      // client auth EKU instead of server auth
	chain               []*testCA // intermediates to append, leaf issuer first
}

// issue signs a leaf for a fresh P-256 key and returns it as a
// tls.Certificate with its chain (not the root) and Leaf set.
func (ca *testCA) issue(t testing.TB, o leafOpts) *tls.Certificate {
	t.Helper()
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Minute)
	}
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(200 * 24 * time.Hour)
	}
	if o.names == nil && o.ips == nil {
		o.names, o.ips = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	key := newKey(t)
	eku := x509.ExtKeyUsageServerAuth
	if o.client {
		eku = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "ward-edge-test"},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{eku},
		BasicConstraintsValid: true,
		DNSNames:              o.names,
		IPAddresses:           o.ips,
		// A real CA says where revocation is published; testssl rates
		// a certificate without CRL nor OCSP URI HIGH. Never fetched.
		CRLDistributionPoints: []string{"http://crl.ward.test/edge.crl"},
	}
	if len(o.names) > 0 {
		tmpl.Subject.CommonName = o.names[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	for _, ic := range o.chain {
		c.Certificate = append(c.Certificate, ic.cert.Raw)
	}
	return c
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// pemPair encodes c's chain and key.
func pemPair(t testing.TB, c *tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// staticSource serves one certificate.
type staticSource struct{ cert *tls.Certificate }

func (s staticSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert, nil
}

func (staticSource) Run(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// requireBinary returns the path of the program name, and fails the test
// (never skips it) when it is missing.
func requireBinary(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: this test needs it (Debian: apt-get install %s)", name, debianPackage)
	}
	return p
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %o, want %o", path, got, want)
	}
}
