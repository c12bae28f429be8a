package edgetls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// filePollInterval is how often a FileSource looks at its files.
const filePollInterval = time.Second

// expiryWarning is how long before expiry a FileSource starts warning, once
// a day, that nothing renewed its certificate.
const expiryWarning = 14 * 24 * time.Hour

// FileSource serves a certificate and key read from PEM files, and reloads
// them when their content changes. A new pair that does not load (bad PEM,
// key that does not match, expired) is refused with an error in the log
// and the pair in use is kept.
type FileSource struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	sum               [sha256.Size]byte // content of the pair in use or last refused; only Run touches it
}

var _ CertSource = (*FileSource)(nil)

// NewFileSource loads the pair certFile/keyFile (the certificate file holds
// the leaf then its intermediates). The error names the file at fault: one
// missing or unreadable, without PEM certificate or key, a key that does
// not match the certificate, a certificate expired or not valid yet.
func NewFileSource(certFile, keyFile string, log *slog.Logger) (*FileSource, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &FileSource{certFile: certFile, keyFile: keyFile, log: log}
	certPEM, keyPEM, err := s.read()
	if err != nil {
		return nil, err
	}
	c, err := s.parse(certPEM, keyPEM, time.Now())
	if err != nil {
		return nil, err
	}
	s.sum = pairSum(certPEM, keyPEM)
	s.cert.Store(c)
	return s, nil
}

// GetCertificate returns the pair in use; after it expired, an error.
func (s *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return serveable(s.cert.Load(), time.Now())
}

// Run looks at the files every second and loads the pair when their
// content changed, until ctx ends. From 14 days before the certificate in
// use expires, it warns once a day.
func (s *FileSource) Run(ctx context.Context) error {
	t := time.NewTicker(filePollInterval)
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			s.reload(now)
			leaf := s.cert.Load().Leaf
			if left := leaf.NotAfter.Sub(now); left < expiryWarning && now.Sub(warned) > 24*time.Hour {
				warned = now
				s.log.Warn("tls certificate expires soon and the files were not renewed", "cert_file", s.certFile,
					"not_after", leaf.NotAfter, "expires_in", left.Round(time.Minute))
			}
		}
	}
}

// reload loads the pair if its content differs from the one in use (or
// the one last refused, so that a bad pair is logged once).
func (s *FileSource) reload(now time.Time) {
	certPEM, keyPEM, err := s.read()
	if err != nil {
		// Missing files while they are being replaced: keep the pair,
		// say it once per change.
		if s.sum != ([sha256.Size]byte{}) {
			s.log.Error("tls certificate files unreadable, keeping the certificate in use", "err", err)
			s.sum = [sha256.Size]byte{}
		}
		return
	}
	sum := pairSum(certPEM, keyPEM)
	if sum == s.sum {
		return
	}
	s.sum = sum
	c, err := s.parse(certPEM, keyPEM, now)
	if err != nil {
		s.log.Error("new tls certificate refused, keeping the certificate in use", "err", err)
		return
	}
	s.cert.Store(c)
	s.log.Info("tls certificate reloaded", "cert_file", s.certFile, "subject", c.Leaf.Subject.String(),
		"serial", c.Leaf.SerialNumber.String(), "not_after", c.Leaf.NotAfter)
}

func (s *FileSource) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(s.certFile); err != nil {
		return nil, nil, fmt.Errorf("edgetls: read certificate file: %w", err)
	}
	if keyPEM, err = os.ReadFile(s.keyFile); err != nil {
		return nil, nil, fmt.Errorf("edgetls: read key file: %w", err)
	}
	return certPEM, keyPEM, nil
}

func (s *FileSource) parse(certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	if !hasPEMBlock(certPEM, "CERTIFICATE") {
		return nil, fmt.Errorf("edgetls: certificate file %s: no PEM CERTIFICATE block", s.certFile)
	}
	if !hasPEMBlock(keyPEM, "PRIVATE KEY") {
		return nil, fmt.Errorf("edgetls: key file %s: no PEM PRIVATE KEY block", s.keyFile)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("edgetls: certificate %s with key %s: %w", s.certFile, s.keyFile, err)
	}
	if err := checkCert(&c, now); err != nil {
		return nil, fmt.Errorf("edgetls: certificate file %s: %w", s.certFile, err)
	}
	return &c, nil
}

// hasPEMBlock reports whether data holds a PEM block whose type ends with
// suffix ("PRIVATE KEY" matches EC, RSA and PKCS#8 keys).
func hasPEMBlock(data []byte, suffix string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if bytes.HasSuffix([]byte(b.Type), []byte(suffix)) {
			return true
		}
	}
}

func pairSum(certPEM, keyPEM []byte) [sha256.Size]byte {
	c, k := sha256.Sum256(certPEM), sha256.Sum256(keyPEM)
	return sha256.Sum256(append(c[:], k[:]...))
}
