package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var td = spiffeid.RequireTrustDomainFromString("example.org")

// backdate is how far the fake CA backdates NotBefore, as internal/ca does
// to tolerate clock skew.
const backdate = 30 * time.Second

func svc(name string) spiffeid.ID { return spiffeid.RequireFromPath(td, "/svc/"+name) }

// caCert is a CA certificate with its key.
type caCert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// fakeCA is an in-process Authority: a root, the intermediates it has
// published in the bundle, one active intermediate that signs, join tokens,
// and a versioned revocation list served by long poll.
type fakeCA struct {
	t    testing.TB
	root *caCert

	mu        sync.Mutex
	active    *caCert
	published []*caCert
	ttl       time.Duration
	tokens    map[string]spiffeid.ID
	failRenew bool
	renewals  int
	version   int64
	revoked   []string
	changed   chan struct{} // closed and replaced when the revocation list changes
}

var _ Authority = (*fakeCA)(nil)

func newFakeCA(t testing.TB) *fakeCA {
	t.Helper()
	root := newKey(t)
	tmpl := caTemplate("fake root")
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, root.Public(), root)
	if err != nil {
		t.Fatal(err)
	}
	ca := &fakeCA{t: t, root: &caCert{mustParse(t, der), root}, ttl: time.Hour, tokens: map[string]spiffeid.ID{}, changed: make(chan struct{})}
	ca.active = ca.newIntermediate()
	ca.published = []*caCert{ca.active}
	return ca
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// newIntermediate creates an intermediate under the root, neither published
// nor active.
func (ca *fakeCA) newIntermediate() *caCert {
	key := newKey(ca.t)
	der, err := x509.CreateCertificate(rand.Reader, caTemplate(fmt.Sprintf("fake intermediate %d", time.Now().UnixNano())), ca.root.cert, key.Public(), ca.root.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	return &caCert{mustParse(ca.t, der), key}
}

// publish adds an intermediate to the bundle; activate makes it the signer;
// retire drops it from the bundle.
func (ca *fakeCA) publish(ic *caCert) {
	ca.mu.Lock()
	ca.published = append(ca.published, ic)
	ca.mu.Unlock()
}
func (ca *fakeCA) activate(ic *caCert) { ca.mu.Lock(); ca.active = ic; ca.mu.Unlock() }
func (ca *fakeCA) retire(ic *caCert) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.published = slices.DeleteFunc(ca.published, func(c *caCert) bool { return c == ic })
}

func (ca *fakeCA) setTTL(d time.Duration) { ca.mu.Lock(); ca.ttl = d; ca.mu.Unlock() }
func (ca *fakeCA) setFailRenew(b bool)    { ca.mu.Lock(); ca.failRenew = b; ca.mu.Unlock() }

// bundle returns the current trust bundle.
func (ca *fakeCA) bundle() *Bundle {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.bundleLocked()
}

func (ca *fakeCA) bundleLocked() *Bundle {
	certs := []*x509.Certificate{ca.root.cert}
	for _, ic := range ca.published {
		certs = append(certs, ic.cert)
	}
	b, err := NewBundle(td, certs)
	if err != nil {
		ca.t.Fatal(err)
	}
	return b
}

// leaf issues a certificate for id and pub, signed by ic, valid in [nb, na).
func (ca *fakeCA) leaf(ic *caCert, id spiffeid.ID, pub crypto.PublicKey, nb, na time.Time) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial(),
		URIs:         []*url.URL{id.URL()},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ic.cert, pub, ic.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	return mustParse(ca.t, der)
}

// tlsCert issues a fresh key and certificate for id, for a test peer.
func (ca *fakeCA) tlsCert(ic *caCert, id spiffeid.ID, nb, na time.Time) *tls.Certificate {
	key := newKey(ca.t)
	leaf := ca.leaf(ic, id, key.Public(), nb, na)
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw, ic.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// token registers a one-time join token for id.
func (ca *fakeCA) token(id spiffeid.ID) string {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	tok := fmt.Sprintf("tok-%d", len(ca.tokens))
	ca.tokens[tok] = id
	return tok
}

// sign issues an SVID for the CSR with the active intermediate.
func (ca *fakeCA) sign(id spiffeid.ID, csrDER []byte) (svidPEM, bundlePEM []byte, err error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, err
	}
	if len(csr.URIs) > 1 || len(csr.URIs) == 1 && csr.URIs[0].String() != id.String() {
		return nil, nil, fmt.Errorf("csr is not for %s", id)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := time.Now()
	leaf := ca.leaf(ca.active, id, csr.PublicKey, now.Add(-backdate), now.Add(ca.ttl))
	return certsPEM(leaf, ca.active.cert), ca.bundleLocked().PEM(), nil
}

func (ca *fakeCA) Enroll(_ context.Context, token string, csrDER []byte) ([]byte, []byte, error) {
	ca.mu.Lock()
	id, ok := ca.tokens[token]
	delete(ca.tokens, token)
	ca.mu.Unlock()
	if !ok {
		return nil, nil, errors.New("invalid join token")
	}
	return ca.sign(id, csrDER)
}

func (ca *fakeCA) Renew(_ context.Context, current *tls.Certificate, csrDER []byte) ([]byte, []byte, error) {
	ca.mu.Lock()
	fail := ca.failRenew
	ca.renewals++
	ca.mu.Unlock()
	if fail {
		return nil, nil, errors.New("authority unavailable")
	}
	// Like the real server's mTLS: an expired or untrusted SVID cannot renew.
	id, err := ca.bundle().VerifySVID(current.Leaf, time.Now())
	if err != nil {
		return nil, nil, err
	}
	return ca.sign(id, csrDER)
}

func (ca *fakeCA) Trust(ctx context.Context, _ *tls.Certificate, after int64, wait time.Duration) (TrustUpdate, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		ca.mu.Lock()
		version, serials, changed := ca.version, slices.Clone(ca.revoked), ca.changed
		ca.mu.Unlock()
		up := TrustUpdate{Version: version, Serials: serials, BundlePEM: ca.bundle().PEM()}
		if version > after {
			return up, nil
		}
		select {
		case <-ctx.Done():
			return TrustUpdate{}, ctx.Err()
		case <-timer.C:
			return up, nil
		case <-changed:
		}
	}
}

// revoke adds serials to the revocation list under a new version.
func (ca *fakeCA) revoke(serials ...string) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.version++
	ca.revoked = append(ca.revoked, serials...)
	close(ca.changed)
	ca.changed = make(chan struct{})
}

// newSource returns a Source enrolled as id with ca.
func newSource(t testing.TB, ca *fakeCA, id spiffeid.ID, opts ...func(*Config)) *Source {
	t.Helper()
	cfg := Config{TrustDomain: td, Authority: ca, Logger: testLogger(t)}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enroll(t.Context(), id, ca.token(id)); err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs s until the test ends and checks that Run returned nil.
func run(t testing.TB, s *Source) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil on cancel", err)
		}
	})
}
