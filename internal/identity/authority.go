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
	// Trust returns the trust feed (revocations and the current bundle)
	// once its version exceeds after, waiting up to wait for a change
	// (long poll).
	Trust(ctx context.Context, current *tls.Certificate, after int64, wait time.Duration) (TrustUpdate, error)
}

// TrustUpdate is one version of the trust feed: every revoked, unexpired
// serial, and the bundle, which changes when an intermediate is introduced
// or retired. The version grows with every change of either.
type TrustUpdate struct {
	Version   int64
	Serials   []string
	BundlePEM []byte // empty when the authority does not send one
}
