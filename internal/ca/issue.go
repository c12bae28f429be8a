package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/store"
)

// Refusal is an error whose Code and Msg may be shown to the caller; Err,
// when set, is the cause for the operator's log.
type Refusal struct {
	Code string // stable reason code, e.g. "token_used"
	Msg  string
	Err  error
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return r.Msg + ": " + r.Err.Error()
	}
	return r.Msg
}

func (r *Refusal) Unwrap() error { return r.Err }

func refuse(code, msg string, err error) *Refusal { return &Refusal{Code: code, Msg: msg, Err: err} }

// Issued is an issued certificate with its chain (leaf, then intermediate).
type Issued struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate
}

// ChainPEM encodes the chain, leaf first.
func (i *Issued) ChainPEM() []byte {
	var b bytes.Buffer
	for _, c := range i.Chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// Workload ID namespaces a join token may be created for.
var workloadNamespaces = []string{"/svc/", "/gateway/"}

// CheckWorkloadID accepts spiffe://<td>/svc/<name> and
// spiffe://<td>/gateway/<name> of this CA's trust domain.
func (c *CA) CheckWorkloadID(id spiffeid.ID) error {
	if !id.MemberOf(c.cfg.TrustDomain) {
		return fmt.Errorf("%s is outside trust domain %s", id, c.cfg.TrustDomain)
	}
	for _, ns := range workloadNamespaces {
		if name, ok := strings.CutPrefix(id.Path(), ns); ok && name != "" && !strings.Contains(name, "/") {
			return nil
		}
	}
	return fmt.Errorf("%s is not a workload ID: use spiffe://%s/svc/NAME or spiffe://%s/gateway/NAME", id, c.cfg.TrustDomain.Name(), c.cfg.TrustDomain.Name())
}

// CreateToken makes a one-time join token for id, valid for ttl. Only its
// hash is stored; the token is returned once.
func (c *CA) CreateToken(ctx context.Context, id spiffeid.ID, ttl time.Duration, actor string) (string, time.Time, error) {
	if err := c.CheckWorkloadID(id); err != nil {
		c.emit(ctx, audit.Event{Type: "ca.token.create", Actor: actor, Subject: id.String(), Decision: "deny", Reason: "bad_id"})
		return "", time.Time{}, refuse("bad_id", err.Error(), nil)
	}
	if ttl <= 0 || ttl > 7*24*time.Hour {
		return "", time.Time{}, refuse("bad_ttl", fmt.Sprintf("token TTL %s must be positive and at most 168h", ttl), nil)
	}
	tok, hash, err := newToken()
	if err != nil {
		return "", time.Time{}, err
	}
	now := c.now()
	t := store.Token{Hash: hash[:], SPIFFEID: id.String(), CreatedBy: actor, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := c.cfg.Store.CreateToken(ctx, t); err != nil {
		return "", time.Time{}, err
	}
	c.emit(ctx, audit.Event{Type: "ca.token.create", Actor: actor, Subject: id.String(), Decision: "allow",
		Fields: map[string]string{"expires": t.ExpiresAt.UTC().Format(time.RFC3339)}})
	return tok, t.ExpiresAt, nil
}

// Enroll trades a join token and a CSR for an SVID. Nothing is stored and
// the token stays unused when anything is wrong.
func (c *CA) Enroll(ctx context.Context, token string, csrDER []byte, source string) (*Issued, error) {
	iss, id, err := c.enroll(ctx, token, csrDER)
	if err != nil {
		c.refused(ctx, "ca.enroll", id, source, err)
		return nil, err
	}
	c.metrics.issued.Inc()
	c.emit(ctx, audit.Event{Type: "ca.enroll", Actor: id, Subject: id, Decision: "allow", Source: source,
		Fields: map[string]string{"serial": SerialText(iss.Cert.SerialNumber), "not_after": iss.Cert.NotAfter.UTC().Format(time.RFC3339)}})
	return iss, nil
}

func (c *CA) enroll(ctx context.Context, token string, csrDER []byte) (*Issued, string, error) {
	hash, err := ParseToken(token)
	if err != nil {
		return nil, "", refuse("token_malformed", "join token is malformed", nil)
	}
	now := c.now()
	t, err := c.cfg.Store.GetToken(ctx, hash[:], now)
	if err != nil {
		return nil, "", tokenRefusal(err)
	}
	id, err := spiffeid.FromString(t.SPIFFEID)
	if err != nil {
		return nil, t.SPIFFEID, fmt.Errorf("stored token has a bad ID: %w", err)
	}
	csr, err := ParseCSR(csrDER, id)
	if err != nil {
		return nil, t.SPIFFEID, refuse("bad_csr", err.Error(), nil)
	}
	iss, rec, err := c.sign(id, csr.PublicKey, c.cfg.DefaultTTL, nil, nil, true)
	if err != nil {
		return nil, t.SPIFFEID, err
	}
	if err := c.cfg.Store.Enroll(ctx, hash[:], now, rec); err != nil {
		return nil, t.SPIFFEID, tokenRefusal(err)
	}
	return iss, t.SPIFFEID, nil
}

func tokenRefusal(err error) error {
	for _, m := range []struct {
		err  error
		code string
		msg  string
	}{
		{store.ErrNotFound, "token_unknown", "join token is not known"},
		{store.ErrTokenUsed, "token_used", "join token was already used"},
		{store.ErrTokenVoided, "token_voided", "join token was voided when its identity was revoked"},
		{store.ErrTokenExpired, "token_expired", "join token has expired"},
	} {
		if errors.Is(err, m.err) {
			return refuse(m.code, m.msg, nil)
		}
	}
	return err
}

// Renew issues a new SVID to the holder of a current one. The caller has
// proved possession over mTLS; peer is the leaf it presented. The identity
// stays the same; an expired or revoked SVID cannot renew.
func (c *CA) Renew(ctx context.Context, peer *x509.Certificate, csrDER []byte, source string) (*Issued, error) {
	iss, id, err := c.renew(ctx, peer, csrDER)
	if err != nil {
		c.refused(ctx, "ca.renew", id, source, err)
		return nil, err
	}
	c.metrics.renewed.Inc()
	c.emit(ctx, audit.Event{Type: "ca.renew", Actor: id, Subject: id, Decision: "allow", Source: source,
		Fields: map[string]string{"serial": SerialText(iss.Cert.SerialNumber), "previous": SerialText(peer.SerialNumber)}})
	return iss, nil
}

func (c *CA) renew(ctx context.Context, peer *x509.Certificate, csrDER []byte) (*Issued, string, error) {
	if peer == nil {
		return nil, "", refuse("no_credential", "renewal needs the current SVID as client certificate", nil)
	}
	id, err := c.Bundle().VerifySVID(peer, c.now())
	if err != nil {
		return nil, "", refuse("bad_credential", "current SVID is not valid", err)
	}
	if err := c.CheckWorkloadID(id); err != nil {
		return nil, id.String(), refuse("bad_credential", "only workload SVIDs renew here", err)
	}
	rec, err := c.cfg.Store.GetCertificate(ctx, SerialText(peer.SerialNumber))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, id.String(), refuse("bad_credential", "current SVID is not in the inventory", nil)
	case err != nil:
		return nil, id.String(), err
	case rec.Revoked():
		return nil, id.String(), refuse("revoked", "current SVID is revoked", nil)
	}
	csr, err := ParseCSR(csrDER, id)
	if err != nil {
		return nil, id.String(), refuse("bad_csr", err.Error(), nil)
	}
	iss, newRec, err := c.sign(id, csr.PublicKey, c.cfg.DefaultTTL, nil, nil, true)
	if err != nil {
		return nil, id.String(), err
	}
	if c.renewChecked != nil {
		c.renewChecked()
	}
	newRec.Renewal = true
	// The store re-checks the presented SVID in the transaction that
	// records the new one, serialized with revocations: a RevokeID racing
	// this renewal either refuses it here or revokes what it recorded.
	switch err := c.cfg.Store.Renew(ctx, rec.Serial, newRec); {
	case errors.Is(err, store.ErrRevoked):
		return nil, id.String(), refuse("revoked", "current SVID is revoked", nil)
	case err != nil:
		return nil, id.String(), err
	}
	return iss, id.String(), nil
}

func (c *CA) refused(ctx context.Context, typ, id, source string, err error) {
	code := "internal"
	var r *Refusal
	if errors.As(err, &r) {
		code = r.Code
	} else {
		c.cfg.Log.Error("issuance failed", "type", typ, "id", id, "err", err)
	}
	c.metrics.refused.WithLabelValues(code).Inc()
	c.emit(ctx, audit.Event{Type: typ, Actor: id, Subject: id, Decision: "deny", Reason: code, Source: source})
}

// IssueServer issues the Ward server's own TLS certificate: its SPIFFE ID
// spiffe://<td>/ward/server plus DNS and IP names for clients that check a
// host name.
func (c *CA) IssueServer(ctx context.Context, pub crypto.PublicKey, hosts []string, ttl time.Duration) (*Issued, error) {
	var dns []string
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			dns = append(dns, h)
		}
	}
	return c.issueInternal(ctx, ServerID(c.cfg.TrustDomain), pub, ttl, dns, ips, "server")
}

// IssueOperator issues an operator's client credential, spiffe://<td>/user/<name>.
func (c *CA) IssueOperator(ctx context.Context, name string, pub crypto.PublicKey, ttl time.Duration) (*Issued, error) {
	id, err := spiffeid.FromSegments(c.cfg.TrustDomain, "user", name)
	if err != nil {
		return nil, fmt.Errorf("operator name %q: %w", name, err)
	}
	return c.issueInternal(ctx, id, pub, ttl, nil, nil, "operator")
}

func (c *CA) issueInternal(ctx context.Context, id spiffeid.ID, pub crypto.PublicKey, ttl time.Duration, dns []string, ips []net.IP, kind string) (*Issued, error) {
	return c.issueRecorded(ctx, pub, audit.Event{Subject: id.String(), Fields: map[string]string{"kind": kind}},
		func() (*Issued, store.Certificate, error) { return c.sign(id, pub, ttl, dns, ips, false) })
}

// issueRecorded signs with sign, records the certificate in the inventory
// and emits ev as a ca.issue event.
func (c *CA) issueRecorded(ctx context.Context, pub crypto.PublicKey, ev audit.Event, sign func() (*Issued, store.Certificate, error)) (*Issued, error) {
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	iss, rec, err := sign()
	if err != nil {
		return nil, err
	}
	if err := c.cfg.Store.InsertCertificate(ctx, rec); err != nil {
		return nil, err
	}
	c.metrics.issued.Inc()
	ev.Type, ev.Decision = "ca.issue", "allow"
	ev.Fields["serial"] = SerialText(iss.Cert.SerialNumber)
	c.emit(ctx, ev)
	return iss, nil
}

// Edge certificate limits.
const (
	MaxEdgeTTL   = 7 * 24 * time.Hour
	MaxEdgeNames = 100
)

// IssueEdge issues a TLS server certificate for the public side of a
// gateway: DNS and IP names only (no SPIFFE URI, so it can never pass as a
// workload identity) and serverAuth as its only extended key usage. It is
// recorded in the inventory under requester, the gateway that asked, so
// that `ward cert revoke --id` of a gateway revokes its edge certificates
// too. Which names a gateway may hold is the caller's decision; IssueEdge
// only checks that they are well formed.
func (c *CA) IssueEdge(ctx context.Context, requester spiffeid.ID, pub crypto.PublicKey, names []string, ttl time.Duration) (*Issued, error) {
	if !requester.MemberOf(c.cfg.TrustDomain) {
		return nil, refuse("bad_id", fmt.Sprintf("%s is outside trust domain %s", requester, c.cfg.TrustDomain), nil)
	}
	if ttl <= 0 || ttl > MaxEdgeTTL {
		return nil, refuse("bad_ttl", fmt.Sprintf("edge certificate TTL %s must be positive and at most %s", ttl, MaxEdgeTTL), nil)
	}
	dns, ips, err := ParseEdgeNames(names)
	if err != nil {
		return nil, refuse("bad_names", err.Error(), nil)
	}
	ev := audit.Event{Actor: requester.String(), Subject: requester.String(),
		Fields: map[string]string{"kind": "edge", "names": strings.Join(names, ",")}}
	return c.issueRecorded(ctx, pub, ev, func() (*Issued, store.Certificate, error) {
		return c.signLeaf(requester, pub, ttl, false, func(t *x509.Certificate) {
			t.DNSNames, t.IPAddresses = dns, ips
			t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		})
	})
}

// ParseEdgeNames splits the names of an edge certificate into DNS names
// (lowercased; a leading "*." wildcard label is allowed) and IP addresses.
// It refuses an empty list, too many names and anything that is neither.
func ParseEdgeNames(names []string) (dns []string, ips []net.IP, err error) {
	if len(names) == 0 {
		return nil, nil, errors.New("give at least one DNS name or IP address")
	}
	if len(names) > MaxEdgeNames {
		return nil, nil, fmt.Errorf("%d names: at most %d", len(names), MaxEdgeNames)
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if !IsDNSName(n) {
			return nil, nil, fmt.Errorf("%q is neither a DNS name nor an IP address", n)
		}
		dns = append(dns, strings.ToLower(n))
	}
	return dns, ips, nil
}

// IsDNSName reports whether s is a host name of letters, digits and '-' in
// dot-separated labels of 1 to 63 characters (no label starting or ending
// with '-'), at most 253 characters, with at least two labels, optionally
// starting with a "*." wildcard label.
func IsDNSName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			ch := l[i] | 0x20 // ASCII lowercase; digits and '-' keep their meaning below
			if (ch < 'a' || ch > 'z') && (l[i] < '0' || l[i] > '9') && l[i] != '-' {
				return false
			}
		}
	}
	return len(labels) >= 2 || labels[0] == "localhost"
}

// ServerID is the Ward server's SPIFFE ID in td.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID {
	id, _ := spiffeid.FromSegments(td, "ward", "server")
	return id
}

// sign creates a leaf for id with the active intermediate. Workload TTLs
// are capped by MaxTTL (capped); internal credentials pass their own.
func (c *CA) sign(id spiffeid.ID, pub crypto.PublicKey, ttl time.Duration, dns []string, ips []net.IP, capped bool) (*Issued, store.Certificate, error) {
	return c.signLeaf(id, pub, ttl, capped, func(t *x509.Certificate) {
		t.URIs = []*url.URL{id.URL()}
		t.DNSNames, t.IPAddresses = dns, ips
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	})
}

// signLeaf creates a leaf with the active intermediate; names sets its
// names and extended key usages. The inventory records it under id.
func (c *CA) signLeaf(id spiffeid.ID, pub crypto.PublicKey, ttl time.Duration, capped bool, names func(*x509.Certificate)) (*Issued, store.Certificate, error) {
	issuer := c.st.Load().issuer(c.now(), c.cfg.PublishDelay)
	if capped && ttl > c.cfg.MaxTTL {
		ttl = c.cfg.MaxTTL
	}
	now := c.now()
	serial, err := randomSerial()
	if err != nil {
		return nil, store.Certificate{}, err
	}
	notAfter := now.Add(ttl)
	if notAfter.After(issuer.cert.NotAfter) {
		notAfter = issuer.cert.NotAfter
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, store.Certificate{}, err
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Ward"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              ku,
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		CRLDistributionPoints: []string{c.crlURL(issuer.rec.ID)},
		OCSPServer:            []string{c.cfg.PublicURL + "/ocsp"},
		IssuingCertificateURL: []string{c.certURL(issuer.rec.ID)},
	}
	names(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.cert, pub, issuer.key)
	if err != nil {
		return nil, store.Certificate{}, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, store.Certificate{}, err
	}
	rec := store.Certificate{
		Serial:    SerialText(serial),
		SPIFFEID:  id.String(),
		IssuerID:  issuer.rec.ID,
		NotBefore: cert.NotBefore,
		NotAfter:  cert.NotAfter,
		DER:       der,
	}
	return &Issued{Cert: cert, Chain: []*x509.Certificate{cert, issuer.cert}}, rec, nil
}

func (c *CA) crlURL(authorityID string) string {
	return c.cfg.PublicURL + "/crl/" + authorityID + ".crl"
}

// certURL is where an authority's certificate is served (AIA caIssuers).
func (c *CA) certURL(authorityID string) string {
	return c.cfg.PublicURL + "/ca/" + authorityID + ".crt"
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// of the subjectPublicKey BIT STRING.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("subject key ID: %w", err)
	}
	sum := sha256.Sum256(subjectPublicKeyBits(spki))
	return sum[:20], nil
}

// authorityID names an authority by its certificate's subject key ID.
func authorityID(cert *x509.Certificate) string { return hex.EncodeToString(cert.SubjectKeyId) }

// Chain verification of an imported CA happens here.
func parseImport(imp *Import) (root, inter *signer, err error) {
	rootCert, err := onePEMCert(imp.RootCert, "root certificate")
	if err != nil {
		return nil, nil, err
	}
	if !rootCert.IsCA || rootCert.CheckSignatureFrom(rootCert) != nil {
		return nil, nil, errors.New("imported root certificate is not a self-signed CA certificate")
	}
	root = &signer{cert: rootCert}
	if len(imp.RootKey) > 0 {
		if root.key, err = parsePEMKey(imp.RootKey, rootCert, "root key"); err != nil {
			return nil, nil, err
		}
	}
	root.rec = store.Authority{ID: authorityID(rootCert), Kind: store.KindRoot, CertDER: rootCert.Raw, State: store.AuthorityActive, CreatedAt: time.Now()}
	if len(imp.IntermediateCert) == 0 {
		if root.key == nil {
			return nil, nil, errors.New("import needs the root key, or an intermediate certificate and key")
		}
		return root, nil, nil
	}
	interCert, err := onePEMCert(imp.IntermediateCert, "intermediate certificate")
	if err != nil {
		return nil, nil, err
	}
	if !interCert.IsCA {
		return nil, nil, errors.New("imported intermediate is not a CA certificate")
	}
	if err := interCert.CheckSignatureFrom(rootCert); err != nil {
		return nil, nil, fmt.Errorf("imported intermediate is not signed by the imported root: %w", err)
	}
	inter = &signer{cert: interCert}
	if inter.key, err = parsePEMKey(imp.IntermediateKey, interCert, "intermediate key"); err != nil {
		return nil, nil, err
	}
	inter.rec = store.Authority{ID: authorityID(interCert), Kind: store.KindIntermediate, CertDER: interCert.Raw, State: store.AuthorityActive, CreatedAt: time.Now()}
	if root.rec.ID == "" || inter.rec.ID == "" {
		return nil, nil, errors.New("imported CA certificates must carry a subject key identifier")
	}
	return root, inter, nil
}

func onePEMCert(data []byte, what string) (*x509.Certificate, error) {
	certs, err := identity.ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s: want one certificate, found %d", what, len(certs))
	}
	return certs[0], nil
}

func parsePEMKey(data []byte, cert *x509.Certificate, what string) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", what)
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: unexpected PEM block %q", what, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", what)
	}
	if !publicKeysEqual(s.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match its certificate", what)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
