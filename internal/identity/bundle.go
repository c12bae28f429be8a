package identity

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Bundle is a trust domain's trust bundle: the root certificates and the
// intermediates currently trusted. Verification builds chains only through
// the bundle's intermediates, never through ones a peer sends, so retiring an
// intermediate (dropping it from the bundle) stops every SVID it issued.
type Bundle struct {
	TrustDomain   spiffeid.TrustDomain
	Roots         []*x509.Certificate
	Intermediates []*x509.Certificate

	roots, inters *x509.CertPool
}

// NewBundle builds a bundle from certificates: self-signed CA certificates
// are roots, other CA certificates intermediates.
func NewBundle(td spiffeid.TrustDomain, certs []*x509.Certificate) (*Bundle, error) {
	b := &Bundle{TrustDomain: td, roots: x509.NewCertPool(), inters: x509.NewCertPool()}
	for _, c := range certs {
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("bundle certificate %q is not a CA certificate", c.Subject)
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			b.Roots = append(b.Roots, c)
			b.roots.AddCert(c)
		} else {
			b.Intermediates = append(b.Intermediates, c)
			b.inters.AddCert(c)
		}
	}
	if len(b.Roots) == 0 {
		return nil, errors.New("bundle has no root certificate")
	}
	return b, nil
}

// ParseBundlePEM reads a bundle written by PEM.
func ParseBundlePEM(td spiffeid.TrustDomain, data []byte) (*Bundle, error) {
	certs, err := ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	return NewBundle(td, certs)
}

// PEM encodes the bundle, roots first.
func (b *Bundle) PEM() []byte {
	return certsPEM(append(slices.Clip(b.Roots), b.Intermediates...)...)
}

// VerifySVID checks that leaf is a valid X.509-SVID of the bundle's trust
// domain at time now, chaining to a root through the bundle's intermediates,
// and returns its SPIFFE ID.
func (b *Bundle) VerifySVID(leaf *x509.Certificate, now time.Time) (spiffeid.ID, error) {
	id, _, err := b.verify(leaf, now)
	return id, err
}

// verify is VerifySVID that also returns the verified chains, leaf first.
// Certificates the peer sent besides its leaf are never used.
func (b *Bundle) verify(leaf *x509.Certificate, now time.Time) (spiffeid.ID, [][]*x509.Certificate, error) {
	if b.roots == nil {
		// A zero pool would make x509 fall back to the system roots.
		return spiffeid.ID{}, nil, errors.New("trust bundle was not built with NewBundle")
	}
	id, err := SVIDID(leaf)
	if err != nil {
		return spiffeid.ID{}, nil, err
	}
	switch {
	case !id.MemberOf(b.TrustDomain):
		return id, nil, fmt.Errorf("%s is outside trust domain %s", id, b.TrustDomain)
	case now.After(leaf.NotAfter):
		return id, nil, fmt.Errorf("certificate of %s expired at %s", id, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return id, nil, fmt.Errorf("certificate of %s is not valid before %s", id, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         b.roots,
		Intermediates: b.inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return id, nil, fmt.Errorf("certificate of %s does not chain to the trust bundle: %w", id, err)
	}
	return id, chains, nil
}

// SVIDID returns the SPIFFE ID of an X.509-SVID leaf, checking the shape
// the SPIFFE X.509-SVID specification requires: exactly one URI SAN holding
// a valid SPIFFE ID, not a CA.
func SVIDID(leaf *x509.Certificate) (spiffeid.ID, error) {
	if leaf.IsCA {
		return spiffeid.ID{}, errors.New("certificate is a CA certificate, not an SVID")
	}
	if len(leaf.URIs) != 1 {
		return spiffeid.ID{}, fmt.Errorf("certificate has %d URI SANs, an SVID has exactly one", len(leaf.URIs))
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("certificate URI SAN is not a SPIFFE ID: %w", err)
	}
	return id, nil
}

// ParseCertsPEM parses every CERTIFICATE block in data; anything else is an error.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(data)) != 0 {
		return nil, errors.New("trailing data that is not PEM")
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate found")
	}
	return certs, nil
}
