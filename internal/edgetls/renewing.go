package edgetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Renewal timing defaults.
const (
	defaultMinRenewGap = time.Minute      // never obtain twice within this (a RenewBefore longer than the lifetime)
	defaultBackoffMin  = time.Second      // first retry after a failed renewal
	defaultBackoffMax  = 5 * time.Minute  // retries never wait longer
	obtainTimeout      = 10 * time.Minute // one attempt that hangs must not stall renewal forever
)

// ObtainFunc obtains a new certificate: a fresh key and a certificate
// for it, with its chain. Its context bounds the attempt.
type ObtainFunc func(ctx context.Context) (*tls.Certificate, error)

// RenewingSource serves a certificate obtained from a CA and obtains a new
// one when two thirds of its lifetime have passed, so a 24-hour certificate
// is renewed 8 hours before expiry, a 90-day one 30 days before. A failed
// renewal is retried with exponential backoff (1s doubling to 5 minutes)
// while the current certificate is served; once it has expired, handshakes
// fail (closed) until a renewal succeeds. It backs Ward's own CA for the
// edge (the obtain function sends a CSR to the server) and ACMESource.
type RenewingSource struct {
	obtain ObtainFunc
	log    *slog.Logger

	// Set before Run; tests shorten them.
	renewBefore            time.Duration // renew at NotAfter-renewBefore if that comes before 2/3 of the lifetime
	minGap                 time.Duration
	backoffMin, backoffMax time.Duration

	startMu  sync.Mutex // serializes first obtains
	cert     atomic.Pointer[tls.Certificate]
	obtained atomic.Pointer[time.Time] // when cert was obtained
}

var _ CertSource = (*RenewingSource)(nil)

// NewRenewingSource returns a source that gets its certificates from
// obtain. It holds no certificate until Start or Run obtained one.
func NewRenewingSource(obtain ObtainFunc, log *slog.Logger) *RenewingSource {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RenewingSource{
		obtain:     obtain,
		log:        log,
		minGap:     defaultMinRenewGap,
		backoffMin: defaultBackoffMin,
		backoffMax: defaultBackoffMax,
	}
}

// GetCertificate returns the current certificate; before the first one
// was obtained, or after it expired, an error.
func (r *RenewingSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return serveable(r.cert.Load(), time.Now())
}

// Start obtains the first certificate, unless there is one already, and
// returns the error if it cannot: call it to fail at startup rather than
// serve nothing. Run calls it.
func (r *RenewingSource) Start(ctx context.Context) error {
	r.startMu.Lock()
	defer r.startMu.Unlock()
	if r.cert.Load() != nil {
		return nil
	}
	c, err := r.obtainChecked(ctx)
	if err != nil {
		return fmt.Errorf("edgetls: obtain first certificate: %w", err)
	}
	r.install(c, "tls certificate obtained")
	return nil
}

// Run obtains the first certificate if Start has not, then renews it on
// schedule until ctx ends. It returns an error only if the first
// certificate cannot be obtained; later failures are retried.
func (r *RenewingSource) Run(ctx context.Context) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	backoff := time.Duration(0)
	t := time.NewTimer(time.Until(r.renewAt()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		c, err := r.obtainChecked(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			backoff = min(max(2*backoff, r.backoffMin), r.backoffMax)
			wait := backoff/2 + rand.N(backoff/2+1)
			cur := r.cert.Load()
			r.log.Error("tls certificate renewal failed, serving the current one until it expires",
				"err", err, "retry_in", wait, "expires_in", time.Until(cur.Leaf.NotAfter).Round(time.Second))
			t.Reset(wait)
			continue
		}
		backoff = 0
		r.install(c, "tls certificate renewed")
		t.Reset(time.Until(r.renewAt()))
	}
}

// obtainChecked calls obtain and checks the result can be served now.
func (r *RenewingSource) obtainChecked(ctx context.Context) (*tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, obtainTimeout)
	defer cancel()
	c, err := r.obtain(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkCert(c, time.Now()); err != nil {
		return nil, fmt.Errorf("obtained certificate unusable: %w", err)
	}
	return c, nil
}

func (r *RenewingSource) install(c *tls.Certificate, msg string) {
	now := time.Now()
	r.obtained.Store(&now)
	r.cert.Store(c)
	leaf := c.Leaf
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if r.renewBefore >= life {
		r.log.Warn("renew-before is not shorter than the certificate lifetime: renewing as often as allowed",
			"renew_before", r.renewBefore, "lifetime", life, "min_interval", min(r.minGap, life/3))
	}
	r.log.Info(msg, "subject", leaf.Subject.String(), "dns_names", leaf.DNSNames,
		"serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter, "renew_at", r.renewAt())
}

// renewAt is when the current certificate is due for renewal.
func (r *RenewingSource) renewAt() time.Time {
	return renewTime(r.cert.Load().Leaf, *r.obtained.Load(), r.renewBefore, r.minGap)
}

// renewTime is when leaf, obtained at obtained, is due for renewal: at 2/3
// of its lifetime, or renewBefore its expiry if that is earlier, but never
// sooner than min(minGap, lifetime/3) after it was obtained (a
// renewBefore longer than the lifetime must not hammer the CA).
func renewTime(leaf *x509.Certificate, obtained time.Time, renewBefore, minGap time.Duration) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	at := leaf.NotBefore.Add(life / 3 * 2)
	if renewBefore > 0 {
		if b := leaf.NotAfter.Add(-renewBefore); b.Before(at) {
			at = b
		}
	}
	if floor := obtained.Add(min(minGap, life/3)); at.Before(floor) {
		at = floor
	}
	return at
}
