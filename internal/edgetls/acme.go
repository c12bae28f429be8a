package edgetls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/wardsec/ward/internal/atomicfile"
)

// ACME challenge types the source answers.
const (
	challengeTLSALPN = "tls-alpn-01"
	challengeHTTP    = "http-01"
)

// acmeALPN is the ALPN protocol of the tls-alpn-01 challenge (RFC 8737).
const acmeALPN = "acme-tls/1"

// ACMEConfig configures an ACMESource.
type ACMEConfig struct {
	// DirectoryURL is the ACME directory, e.g. Let's Encrypt's
	// https://acme-v02.api.letsencrypt.org/directory. Required, https.
	DirectoryURL string
	// Email is the account contact the CA writes to about expiring
	// certificates and incidents. Optional.
	Email string
	// Domains are the DNS names of the certificate (the first is its
	// subject). Required; no wildcards (they need dns-01) and no IP
	// addresses.
	Domains []string
	// CacheDir keeps the account key and the certificate with its key
	// (files 0600, directory 0700), so that a restart neither registers
	// a new account nor orders a new certificate. Required.
	CacheDir string
	// RootCAs, when set, are the only roots trusted for the directory's
	// HTTPS (a private or test CA such as pebble's). Without it, the
	// system roots. Not with HTTPClient.
	RootCAs *x509.CertPool
	// HTTPClient talks to the directory. Default: one with RootCAs and
	// 30s timeouts.
	HTTPClient *http.Client
	// RenewBefore renews the certificate this long before it expires, if
	// that comes before 2/3 of its lifetime (30 days of a 90-day
	// certificate). Zero: 2/3 of the lifetime only.
	RenewBefore time.Duration
	// Log receives what the source does; nil discards.
	Log *slog.Logger
}

// ACMESource obtains its certificate from an ACME CA (RFC 8555) and renews
// it before expiry without a restart. It answers the tls-alpn-01 challenge
// in GetCertificate (so the gateway's TLS listener must be serving while a
// certificate is ordered, with a ServerConfig built on this source) and,
// when the gateway serves HTTPHandler on port 80, the http-01 challenge.
// tls-alpn-01 is tried first; if it fails and HTTPHandler is in use, the
// order is tried again with http-01.
type ACMESource struct {
	renew *RenewingSource

	cfg      ACMEConfig
	client   *acme.Client
	log      *slog.Logger
	certPath string // cached certificate and key, PEM

	regMu      sync.Mutex
	registered bool

	httpUsed   atomic.Bool
	challenges []string // challenge types in order of preference, tests may narrow

	mu        sync.Mutex
	httpToken map[string]string           // http-01 token -> key authorization
	alpnCerts map[string]*tls.Certificate // name -> tls-alpn-01 certificate
}

var _ CertSource = (*ACMESource)(nil)

// NewACMESource checks cfg, prepares CacheDir and loads or creates the
// account key there. It does not talk to the CA: Start or Run does.
func NewACMESource(cfg ACMEConfig) (*ACMESource, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.DirectoryURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("edgetls: ACME directory URL %q: want an https:// URL", cfg.DirectoryURL)
	}
	if len(cfg.Domains) == 0 {
		return nil, errors.New("edgetls: ACME needs at least one domain")
	}
	domains := make([]string, 0, len(cfg.Domains))
	for _, d := range cfg.Domains {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		switch {
		case strings.Contains(d, "*"):
			return nil, fmt.Errorf("edgetls: ACME domain %q: wildcards need the dns-01 challenge, which Ward does not answer", d)
		case net.ParseIP(d) != nil || !validDNSName(d) || !strings.Contains(d, "."):
			return nil, fmt.Errorf("edgetls: ACME domain %q: want a fully qualified DNS name", d)
		case slices.Contains(domains, d):
			return nil, fmt.Errorf("edgetls: ACME domain %q listed twice", d)
		}
		domains = append(domains, d)
	}
	cfg.Domains = domains
	if cfg.Email != "" && (strings.ContainsAny(cfg.Email, " \t\r\n,") || !strings.Contains(cfg.Email, "@")) {
		return nil, fmt.Errorf("edgetls: ACME email %q is not an address", cfg.Email)
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("edgetls: ACME needs a cache directory for its account key and certificate")
	}
	if cfg.RenewBefore < 0 {
		return nil, errors.New("edgetls: ACME renew-before is negative")
	}
	if cfg.HTTPClient != nil && cfg.RootCAs != nil {
		return nil, errors.New("edgetls: ACME: set RootCAs or HTTPClient, not both")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = acmeHTTPClient(cfg.RootCAs)
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("edgetls: ACME cache directory: %w", err)
	}
	if err := os.Chmod(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("edgetls: ACME cache directory: %w", err)
	}
	// Files are named after the directory (and the names): switching from
	// a staging CA to a production one must not serve the staging
	// certificate, nor reuse its account.
	dirTag := shortHash(cfg.DirectoryURL)
	key, err := loadOrCreateKey(filepath.Join(cfg.CacheDir, "account-"+dirTag+".key"))
	if err != nil {
		return nil, err
	}
	a := &ACMESource{
		cfg:        cfg,
		log:        cfg.Log,
		client:     &acme.Client{Key: key, DirectoryURL: cfg.DirectoryURL, HTTPClient: cfg.HTTPClient, UserAgent: "ward-gateway"},
		certPath:   filepath.Join(cfg.CacheDir, "cert-"+shortHash(cfg.DirectoryURL+"\n"+strings.Join(domains, ","))+".pem"),
		challenges: []string{challengeTLSALPN, challengeHTTP},
		httpToken:  map[string]string{},
		alpnCerts:  map[string]*tls.Certificate{},
	}
	a.renew = NewRenewingSource(a.obtain, cfg.Log)
	a.renew.renewBefore = cfg.RenewBefore
	return a, nil
}

func acmeHTTPClient(roots *x509.CertPool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// GetCertificate answers tls-alpn-01 challenge handshakes with the
// challenge certificate, and any other handshake with the certificate.
func (a *ACMESource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeALPN {
		a.mu.Lock()
		c := a.alpnCerts[strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))]
		a.mu.Unlock()
		if c == nil {
			return nil, fmt.Errorf("edgetls: no tls-alpn-01 challenge pending for %q", hello.ServerName)
		}
		return c, nil
	}
	return a.renew.GetCertificate(hello)
}

// Start obtains the first certificate (from the cache if it holds a valid
// one) unless there is one already, and returns the error if it cannot.
// The TLS listener (and the HTTP one for http-01) must be serving already:
// the CA connects to them to validate the challenge.
func (a *ACMESource) Start(ctx context.Context) error { return a.renew.Start(ctx) }

// Run obtains the first certificate if Start has not, then renews it
// before it expires, until ctx ends.
func (a *ACMESource) Run(ctx context.Context) error {
	defer a.client.HTTPClient.CloseIdleConnections()
	return a.renew.Run(ctx)
}

func (a *ACMESource) extraNextProtos() []string { return []string{acmeALPN} }

// HTTPHandler answers ACME http-01 challenges under
// /.well-known/acme-challenge/ and passes every other request to fallback
// (nil: a redirect to HTTPS on port 443). Serving it enables http-01.
func (a *ACMESource) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = RedirectHandler(":443", a)
	}
	a.httpUsed.Store(true)
	const prefix = "/.well-known/acme-challenge/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix) {
			fallback.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		a.mu.Lock()
		keyAuth, ok := a.httpToken[strings.TrimPrefix(r.URL.Path, prefix)]
		a.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(keyAuth))
	})
}

// obtain is the RenewingSource's ObtainFunc: the cached certificate on the
// first call if it is still valid (when it is due for renewal, the source
// renews it soon after), else a new order, trying each usable challenge
// type in turn.
func (a *ACMESource) obtain(ctx context.Context) (*tls.Certificate, error) {
	if a.renew.cert.Load() == nil {
		if c, err := a.loadCached(); err != nil {
			a.log.Warn("cached ACME certificate not used", "err", err)
		} else if c != nil {
			a.log.Info("using cached ACME certificate", "path", a.certPath)
			return c, nil
		}
	}
	if err := a.register(ctx); err != nil {
		return nil, err
	}
	var errs []error
	for _, typ := range a.challenges {
		if typ == challengeHTTP && !a.httpUsed.Load() {
			continue
		}
		c, err := a.order(ctx, typ)
		if err == nil {
			return c, nil
		}
		a.log.Warn("ACME order failed", "challenge", typ, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", typ, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("acme: %w", errors.Join(errs...))
}

func (a *ACMESource) register(ctx context.Context) error {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	if a.registered {
		return nil
	}
	acct := &acme.Account{}
	if a.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + a.cfg.Email}
	}
	if _, err := a.client.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("acme: register account: %w", err)
	}
	a.registered = true
	return nil
}

// order runs one ACME order for the domains with challenge type typ.
func (a *ACMESource) order(ctx context.Context, typ string) (*tls.Certificate, error) {
	o, err := a.client.AuthorizeOrder(ctx, acme.DomainIDs(a.cfg.Domains...))
	if err != nil {
		return nil, fmt.Errorf("new order: %w", err)
	}
	for _, zurl := range o.AuthzURLs {
		if err := a.authorize(ctx, zurl, typ); err != nil {
			return nil, err
		}
	}
	if o, err = a.client.WaitOrder(ctx, o.URI); err != nil {
		return nil, fmt.Errorf("wait for order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: a.cfg.Domains}, key)
	if err != nil {
		return nil, err
	}
	der, _, err := a.client.CreateOrderCert(ctx, o.FinalizeURL, csr, true)
	if err != nil {
		return nil, fmt.Errorf("finalize order: %w", err)
	}
	c := &tls.Certificate{Certificate: der, PrivateKey: key}
	if err := a.checkIssued(c); err != nil {
		return nil, err
	}
	if err := a.saveCached(c); err != nil {
		// Serving the new certificate matters more than caching it.
		a.log.Error("cannot cache the ACME certificate", "err", err)
	}
	return c, nil
}

// authorize proves control of the authorization's name with challenge
// type typ, unless it is valid already.
func (a *ACMESource) authorize(ctx context.Context, zurl, typ string) error {
	z, err := a.client.GetAuthorization(ctx, zurl)
	if err != nil {
		return fmt.Errorf("get authorization: %w", err)
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	if z.Status != acme.StatusPending {
		return fmt.Errorf("authorization for %s is %s", z.Identifier.Value, z.Status)
	}
	var chal *acme.Challenge
	for _, c := range z.Challenges {
		if c.Type == typ {
			chal = c
		}
	}
	if chal == nil {
		return fmt.Errorf("CA offers no %s challenge for %s", typ, z.Identifier.Value)
	}
	name := z.Identifier.Value
	switch typ {
	case challengeTLSALPN:
		cert, err := a.client.TLSALPN01ChallengeCert(chal.Token, name)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.alpnCerts[name] = &cert
		a.mu.Unlock()
		defer func() { a.mu.Lock(); delete(a.alpnCerts, name); a.mu.Unlock() }()
	case challengeHTTP:
		keyAuth, err := a.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.httpToken[chal.Token] = keyAuth
		a.mu.Unlock()
		defer func() { a.mu.Lock(); delete(a.httpToken, chal.Token); a.mu.Unlock() }()
	}
	if _, err := a.client.Accept(ctx, chal); err != nil {
		return fmt.Errorf("accept %s challenge for %s: %w", typ, name, err)
	}
	if _, err := a.client.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("%s challenge for %s: %w", typ, name, err)
	}
	return nil
}

// checkIssued makes sure c covers every domain and can be served.
func (a *ACMESource) checkIssued(c *tls.Certificate) error { return covers(c, a.cfg.Domains) }

// loadCached returns the cached certificate if it covers the domains and
// has not expired; nil, nil if there is none.
func (a *ACMESource) loadCached() (*tls.Certificate, error) {
	c, err := loadCertFile(a.certPath)
	if c == nil || err != nil {
		return nil, err
	}
	if err := a.checkIssued(c); err != nil {
		return nil, fmt.Errorf("%s: %w", a.certPath, err)
	}
	return c, nil
}

func (a *ACMESource) saveCached(c *tls.Certificate) error { return saveCertFile(a.certPath, c) }

// loadOrCreateKey reads a PKCS#8 ECDSA key from path, or creates a P-256
// key there (mode 0600).
func loadOrCreateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		b, _ := pem.Decode(data)
		if b == nil || b.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("edgetls: ACME account key %s: no PEM PRIVATE KEY block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("edgetls: ACME account key %s: %w", path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("edgetls: ACME account key %s: not a signing key", path)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("edgetls: ACME account key: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("edgetls: ACME account key: %w", err)
	}
	return k, nil
}
