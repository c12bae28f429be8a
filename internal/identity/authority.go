package identity

import (
	"context"
	"crypto/tls"
	"time"
)

// Authority is what a workload needs from the Ward server. control.Client
// implements it over HTTPS; tests use an in-process fake.
type Authority interface {
	// Enroll trades a one-time join token and a CSR (DER) for an SVID chain
	// (PEM, leaf first) and the trust bundle (PEM).
	Enroll(ctx context.Context, token string, csrDER []byte) (svidPEM, bundlePEM []byte, err error)
	// Renew proves the current SVID over mTLS and gets a new one.
	Renew(ctx context.Context, current *tls.Certificate, csrDER []byte) (svidPEM, bundlePEM []byte, err error)
	// Revocations returns the revocation list once its version exceeds
	// after, waiting up to wait for a change (long poll).
	Revocations(ctx context.Context, current *tls.Certificate, after int64, wait time.Duration) (version int64, serials []string, err error)
}
