package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/atomicfile"
)

// Files an SVID is persisted in, inside its directory.
const (
	SVIDFile   = "svid.pem"   // certificate chain, leaf first
	KeyFile    = "key.pem"    // PKCS#8 private key, mode 0600
	BundleFile = "bundle.pem" // trust bundle
)

// SVID is an X.509-SVID together with its private key.
type SVID struct {
	ID    spiffeid.ID
	Chain []*x509.Certificate // leaf first, then the intermediates that issued it
	Key   crypto.Signer
}

// NewSVID checks that chain starts with an X.509-SVID leaf whose public key
// is key's, and returns the SVID.
func NewSVID(chain []*x509.Certificate, key crypto.Signer) (*SVID, error) {
	if len(chain) == 0 {
		return nil, errors.New("svid has no certificate")
	}
	id, err := SVIDID(chain[0])
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, fmt.Errorf("private key does not match the certificate of %s (serial %s)", id, chain[0].SerialNumber.Text(16))
	}
	return &SVID{ID: id, Chain: chain, Key: key}, nil
}

// Leaf returns the SVID's own certificate.
func (s *SVID) Leaf() *x509.Certificate { return s.Chain[0] }

// Serial returns the leaf's serial number in lowercase hex, the form
// revocation lists use.
func (s *SVID) Serial() string { return s.Leaf().SerialNumber.Text(16) }

// TLSCertificate returns the SVID as a certificate to present in TLS.
func (s *SVID) TLSCertificate() *tls.Certificate {
	c := &tls.Certificate{PrivateKey: s.Key, Leaf: s.Leaf()}
	for _, cert := range s.Chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

// ChainPEM encodes the certificate chain, leaf first.
func (s *SVID) ChainPEM() []byte { return certsPEM(s.Chain...) }

// NewCSR generates an ECDSA P-256 key and a certificate signing request for
// id: the request's only name is the URI SAN holding id (none for a zero id,
// leaving the choice to the authority, e.g. the ID a join token is bound
// to). The key stays with the caller; only the CSR goes to the authority.
func NewCSR(id spiffeid.ID) (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl := &x509.CertificateRequest{SignatureAlgorithm: x509.ECDSAWithSHA256}
	if !id.IsZero() {
		tmpl.URIs = []*url.URL{id.URL()}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create csr: %w", err)
	}
	return key, csr, nil
}

// SaveSVID writes svid and bundle into dir (created 0700 if missing): the
// chain, the key (PKCS#8, mode 0600) and the bundle, each file replaced
// atomically.
func SaveSVID(dir string, svid *SVID, bundle *Bundle) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(svid.Key)
	if err != nil {
		return fmt.Errorf("save svid: encode key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save svid: %w", err)
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{SVIDFile, svid.ChainPEM(), 0o644},
		{BundleFile, bundle.PEM(), 0o644},
	}
	for _, f := range files {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return fmt.Errorf("save svid: %w", err)
		}
	}
	return nil
}

// LoadSVID reads an SVID and its trust bundle saved by SaveSVID. It rejects
// a key that does not match the leaf, or that others may read. It checks
// neither expiry nor the chain: see Source.Load.
func LoadSVID(dir string) (*SVID, *Bundle, error) {
	keyPath := filepath.Join(dir, KeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, nil, fmt.Errorf("%s is accessible by others (mode %04o), expected 0600", keyPath, perm)
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	keyPEM, err := read(KeyFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	chainPEM, err := read(SVIDFile)
	if err != nil {
		return nil, nil, err
	}
	chain, err := ParseCertsPEM(chainPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, SVIDFile), err)
	}
	svid, err := NewSVID(chain, key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	bundlePEM, err := read(BundleFile)
	if err != nil {
		return nil, nil, err
	}
	bundle, err := ParseBundlePEM(svid.ID.TrustDomain(), bundlePEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, BundleFile), err)
	}
	return svid, bundle, nil
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("expected exactly one PKCS#8 PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	return signer, nil
}

func certsPEM(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}
