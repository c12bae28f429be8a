package edgetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/wardsec/ward/internal/atomicfile"
)

// CachedObtain keeps the certificates obtain returns in the file at path
// (chain then key, mode 0600), and answers its first call with the cached
// certificate while that one is valid and covers names. A gateway that
// restarts while its CA cannot be reached so keeps serving the edge; the
// source renews the certificate when it is due, as it would have.
func CachedObtain(path string, names []string, obtain ObtainFunc, log *slog.Logger) ObtainFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var first atomic.Bool
	first.Store(true)
	return func(ctx context.Context) (*tls.Certificate, error) {
		if first.Swap(false) {
			c, err := loadCertFile(path)
			if err == nil && c != nil {
				err = covers(c, names)
			}
			switch {
			case err != nil:
				log.Warn("cached tls certificate not used", "path", path, "err", err)
			case c != nil:
				log.Info("using the cached tls certificate", "path", path)
				return c, nil
			}
		}
		c, err := obtain(ctx)
		if err != nil {
			return nil, err
		}
		if err := saveCertFile(path, c); err != nil {
			// The certificate is in use; only a restart without the CA misses it.
			log.Warn("cannot cache the tls certificate", "path", path, "err", err)
		}
		return c, nil
	}
}

// covers checks that c can be served now and is valid for every name.
func covers(c *tls.Certificate, names []string) error {
	if err := checkCert(c, time.Now()); err != nil {
		return err
	}
	for _, n := range names {
		if err := c.Leaf.VerifyHostname(n); err != nil {
			return fmt.Errorf("certificate does not cover %s", n)
		}
	}
	return nil
}

// loadCertFile reads a certificate saved by saveCertFile; nil, nil when
// there is none. A file others may read is refused: it holds the key.
func loadCertFile(path string) (*tls.Certificate, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible by others (mode %04o), expected 0600", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// saveCertFile writes the chain then the key to one 0600 file, atomically.
func saveCertFile(path string, c *tls.Certificate) error {
	var buf []byte
	for _, der := range c.Certificate {
		buf = append(buf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return err
	}
	buf = append(buf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return atomicfile.Write(path, buf, 0o600)
}
