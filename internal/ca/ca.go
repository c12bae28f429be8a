// Package ca is Ward's certificate authority: a root and one or more
// intermediates (generated or imported, keys sealed at rest), join tokens,
// enrollment and renewal of X.509-SVIDs, revocation with a signed CRL, an
// RFC 6960 OCSP responder and a versioned revocation list for proxies, and
// intermediate rotation without outage.
package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/store"
)

// Defaults.
const (
	DefaultSVIDTTL    = time.Hour
	DefaultMaxSVIDTTL = 24 * time.Hour
	// DefaultPublishDelay: see Config.PublishDelay.
	DefaultPublishDelay = 30 * time.Second
	rootTTL             = 10 * 365 * 24 * time.Hour
	intermediateTTL     = 365 * 24 * time.Hour
	backdate            = 30 * time.Second // tolerate small clock skew between hosts
	metaTrustDomain     = "trust_domain"
)

// Config is what New needs.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       store.Store
	KEK         *KEK
	// PublicURL is where relying parties fetch the CRL and ask OCSP, e.g.
	// http://127.0.0.1:8441; it is written into every issued certificate.
	PublicURL string
	// DefaultTTL and MaxTTL bound SVID lifetimes (defaults 1h and 24h).
	DefaultTTL, MaxTTL time.Duration
	// PublishDelay is how long a new intermediate sits in the trust bundle
	// before it issues, so that every workload has it (through the trust
	// feed) before it meets an SVID it signed. Default 30s.
	PublishDelay time.Duration
	Events       audit.Sink
	Log          *slog.Logger
	Now          func() time.Time // for tests; time.Now when nil
}

// Import carries an operator's own CA, PEM encoded. RootCert is required.
// With RootKey, Ward generates (and can later rotate) intermediates; without
// it, IntermediateCert and IntermediateKey are required and used as is.
type Import struct {
	RootCert, RootKey                 []byte
	IntermediateCert, IntermediateKey []byte
}

type signer struct {
	rec  store.Authority
	cert *x509.Certificate
	key  crypto.Signer // nil for an imported root without its key
}

// state is an immutable view of the authorities, swapped whole.
type state struct {
	root    *signer
	trusted []*signer // intermediates in the bundle, oldest first
	bundle  *identity.Bundle
}

// CA is the certificate authority. It is safe for concurrent use.
type CA struct {
	cfg     Config
	st      atomic.Pointer[state]
	metrics *Metrics
	// seenVersion is the trust feed version last seen by WaitTrust.
	seenVersion atomic.Int64
	crlMu       sync.Mutex
	crls        map[string]*crlEntry
	// renewChecked, when set (tests only), runs between a renewal's
	// revocation check and its recording: the window a revocation races.
	renewChecked func()
}

// New opens the CA kept in cfg.Store, initialising it on first use: with
// imp when given, else with a fresh ECDSA P-256 root and intermediate.
func New(ctx context.Context, cfg Config, imp *Import) (*CA, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("trust domain is required")
	}
	if cfg.Store == nil || cfg.KEK == nil {
		return nil, errors.New("store and key-encryption key are required")
	}
	if _, err := url.Parse(cfg.PublicURL); err != nil || !strings.HasPrefix(cfg.PublicURL, "http") {
		return nil, fmt.Errorf("public URL %q is not an http(s) URL", cfg.PublicURL)
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = DefaultSVIDTTL
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxSVIDTTL
	}
	if cfg.DefaultTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("default SVID TTL %s exceeds the maximum %s", cfg.DefaultTTL, cfg.MaxTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PublishDelay == 0 {
		cfg.PublishDelay = DefaultPublishDelay
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Events == nil {
		cfg.Events = audit.SlogSink{Log: cfg.Log}
	}
	c := &CA{cfg: cfg, crls: map[string]*crlEntry{}}
	c.metrics = newMetrics(c)

	switch td, err := cfg.Store.GetMeta(ctx, metaTrustDomain); {
	case errors.Is(err, store.ErrNotFound):
		if err := cfg.Store.SetMeta(ctx, metaTrustDomain, cfg.TrustDomain.Name()); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case td != cfg.TrustDomain.Name():
		return nil, fmt.Errorf("store belongs to trust domain %q, not %q", td, cfg.TrustDomain.Name())
	}

	auths, err := cfg.Store.ListAuthorities(ctx)
	if err != nil {
		return nil, err
	}
	if len(auths) == 0 {
		if err := c.initialize(ctx, imp); err != nil {
			return nil, err
		}
	} else if imp != nil {
		return nil, errors.New("CA is already initialised; an import applies only to a new data directory")
	}
	if err := c.Reload(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// issuer returns the intermediate that signs at now: the newest one with a
// key that has been published for at least delay, else the oldest one (the
// one every workload has had longest).
func (s *state) issuer(now time.Time, delay time.Duration) *signer {
	var oldest *signer
	for i := len(s.trusted) - 1; i >= 0; i-- {
		sg := s.trusted[i]
		if sg.key == nil {
			continue
		}
		if !sg.rec.CreatedAt.Add(delay).After(now) {
			return sg
		}
		oldest = sg
	}
	return oldest
}

// Reload re-reads the authorities from the store (another server may have
// rotated them).
func (c *CA) Reload(ctx context.Context) error {
	auths, err := c.cfg.Store.ListAuthorities(ctx)
	if err != nil {
		return err
	}
	s := &state{}
	var bundleCerts []*x509.Certificate
	for _, a := range auths {
		sg, err := c.openSigner(a)
		if err != nil {
			return err
		}
		switch {
		case a.Kind == store.KindRoot && a.State == store.AuthorityActive:
			if s.root != nil {
				return errors.New("store holds more than one active root")
			}
			s.root = sg
			bundleCerts = append(bundleCerts, sg.cert)
		case a.Kind == store.KindIntermediate && a.State != store.AuthorityRetired:
			s.trusted = append(s.trusted, sg)
			bundleCerts = append(bundleCerts, sg.cert)
		}
	}
	if s.root == nil || s.issuer(c.now(), c.cfg.PublishDelay) == nil {
		return errors.New("store holds no usable root and intermediate")
	}
	if s.bundle, err = identity.NewBundle(c.cfg.TrustDomain, bundleCerts); err != nil {
		return err
	}
	c.st.Store(s)
	return nil
}

// CheckKEK reports whether kek opens the newest authority key kept in st,
// without changing anything: nil when it does (or when no key is kept
// yet, on first start), an error matching ErrWrongKEK when it does not.
// A server checks its KEK so before it writes anything sealed with it.
func CheckKEK(ctx context.Context, st store.Store, kek *KEK) error {
	auths, err := st.ListAuthorities(ctx)
	if err != nil {
		return err
	}
	for i := len(auths) - 1; i >= 0; i-- {
		a := auths[i]
		if len(a.SealedKey) == 0 {
			continue
		}
		pt, err := kek.Open(a.SealedKey, []byte(a.ID))
		if err != nil {
			return fmt.Errorf("authority %s: %w", a.ID, err)
		}
		clear(pt)
		return nil
	}
	return nil
}

func (c *CA) openSigner(a store.Authority) (*signer, error) {
	cert, err := x509.ParseCertificate(a.CertDER)
	if err != nil {
		return nil, fmt.Errorf("authority %s: %w", a.ID, err)
	}
	sg := &signer{rec: a, cert: cert}
	if len(a.SealedKey) == 0 {
		return sg, nil
	}
	der, err := c.cfg.KEK.Open(a.SealedKey, []byte(a.ID))
	if err != nil {
		return nil, fmt.Errorf("authority %s: %w", a.ID, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("authority %s key: %w", a.ID, err)
	}
	var ok bool
	if sg.key, ok = key.(crypto.Signer); !ok {
		return nil, fmt.Errorf("authority %s key is not a signing key", a.ID)
	}
	return sg, nil
}

func (c *CA) initialize(ctx context.Context, imp *Import) error {
	var root, inter *signer
	var err error
	if imp == nil {
		if root, err = c.newAuthority(store.KindRoot, nil); err != nil {
			return err
		}
	} else if root, inter, err = parseImport(imp); err != nil {
		return err
	}
	if inter == nil {
		if inter, err = c.newAuthority(store.KindIntermediate, root); err != nil {
			return err
		}
	}
	for _, s := range []*signer{root, inter} {
		if err := c.putSigner(ctx, s); err != nil {
			return err
		}
	}
	c.cfg.Log.Info("initialised certificate authority", "trust_domain", c.cfg.TrustDomain.Name(),
		"root", root.rec.ID, "intermediate", inter.rec.ID, "imported", imp != nil)
	return nil
}

func (c *CA) putSigner(ctx context.Context, s *signer) error {
	if s.key != nil {
		der, err := x509.MarshalPKCS8PrivateKey(s.key)
		if err != nil {
			return err
		}
		if s.rec.SealedKey, err = c.cfg.KEK.Seal(der, []byte(s.rec.ID)); err != nil {
			return err
		}
	}
	return c.cfg.Store.PutAuthority(ctx, s.rec)
}

// newAuthority creates a root (parent nil) or an intermediate under parent.
func (c *CA) newAuthority(kind string, parent *signer) (*signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	name := "Ward Root CA"
	ttl := rootTTL
	if kind == store.KindIntermediate {
		name = "Ward Intermediate CA " + now.UTC().Format("2006-01-02T15:04:05Z")
		ttl = intermediateTTL
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Ward"}, CommonName: name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{c.cfg.TrustDomain.ID().URL()},
	}
	parentCert, parentKey := tmpl, crypto.Signer(key)
	if parent != nil {
		if parent.key == nil {
			return nil, errors.New("the root's private key is not held by Ward, so it cannot sign a new intermediate")
		}
		parentCert, parentKey = parent.cert, parent.key
		tmpl.MaxPathLenZero = true
		tmpl.CRLDistributionPoints = []string{c.crlURL(parent.rec.ID)}
		tmpl.IssuingCertificateURL = []string{c.certURL(parent.rec.ID)}
		if tmpl.NotAfter.After(parent.cert.NotAfter) {
			tmpl.NotAfter = parent.cert.NotAfter
		}
	} else {
		tmpl.MaxPathLen = 1
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, parentKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &signer{
		rec:  store.Authority{ID: hex.EncodeToString(cert.SubjectKeyId), Kind: kind, CertDER: der, State: store.AuthorityActive, CreatedAt: now},
		cert: cert,
		key:  key,
	}, nil
}

// randomSerial returns a positive 127-bit serial number.
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, err
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// SerialText is how Ward writes serial numbers: lowercase hex.
func SerialText(n *big.Int) string { return n.Text(16) }

// TrustDomain returns the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.cfg.TrustDomain }

// Bundle returns the current trust bundle: the root and every intermediate
// that is still trusted.
func (c *CA) Bundle() *identity.Bundle { return c.st.Load().bundle }

// Metrics returns the CA's Prometheus collectors.
func (c *CA) Metrics() *Metrics { return c.metrics }

func (c *CA) now() time.Time { return c.cfg.Now() }

func (c *CA) emit(ctx context.Context, e audit.Event) {
	e.Time = c.now()
	if err := c.cfg.Events.Emit(ctx, e); err != nil {
		c.cfg.Log.Error("audit event not recorded", "type", e.Type, "err", err)
	}
}
