package edgetls

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// errNoCertificate is what handshakes get before a source has its first
// certificate.
var errNoCertificate = errors.New("edgetls: no certificate yet")

// checkCert makes sure c has a parsed leaf and can be served at now: the
// leaf parses, is valid at now, and (when the key is known) matches the
// private key. It sets c.Leaf.
func checkCert(c *tls.Certificate, now time.Time) error {
	if c == nil || len(c.Certificate) == 0 {
		return errors.New("no certificate")
	}
	if c.PrivateKey == nil {
		return errors.New("no private key")
	}
	if c.Leaf == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return fmt.Errorf("parse leaf certificate: %w", err)
		}
		c.Leaf = leaf
	}
	signer, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return errors.New("private key cannot sign")
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(c.Leaf.PublicKey) {
		return errors.New("private key does not match the certificate")
	}
	if now.After(c.Leaf.NotAfter) {
		return fmt.Errorf("certificate expired at %s", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.Leaf.NotBefore) {
		return fmt.Errorf("certificate not valid before %s", c.Leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// serveable returns c for a handshake, or an error once it expired: at
// expiry the edge fails closed rather than serve a certificate every client
// must reject.
func serveable(c *tls.Certificate, now time.Time) (*tls.Certificate, error) {
	if c == nil {
		return nil, errNoCertificate
	}
	if now.After(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("edgetls: certificate expired at %s", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return c, nil
}
