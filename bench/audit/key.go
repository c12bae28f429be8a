package auditbench

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
)

// savePub keeps the public key of a generated log next to it, so a reused
// log can still be verified with signatures.
func savePub(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, der, 0o600)
}

func loadPub(path string) (*ecdsa.PublicKey, error) {
	der, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return k, nil
}
