package identity

import (
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/atomicfile"
	"github.com/wardsec/ward/internal/retry"
)

const (
	// revocationWait is how long one revocation long poll may wait for a change.
	revocationWait = 30 * time.Second
	// renewTimeout bounds one renewal call, so a hung call does not stop retries.
	renewTimeout = 30 * time.Second
)

// Config configures a Source.
type Config struct {
	// TrustDomain the workload belongs to. Required.
	TrustDomain spiffeid.TrustDomain
	// Authority enrolls and renews the SVID and serves revocations. A Source
	// without one can only Load an SVID and build TLS configs (a CLI).
	Authority Authority
	// Dir persists the SVID, its key and the bundle (see SaveSVID), and
	// the last revocation set and bundle the feed sent (RevocationsFile),
	// which LoadOrEnroll restores. Empty keeps them in memory only.
	Dir string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock; defaults to time.Now. For tests.
	Now func() time.Time
}

// Source holds a workload's current SVID, trust bundle and revocation set,
// and keeps them fresh (see Run). Readers never lock: each is an immutable
// value behind an atomic pointer, swapped whole. TLS configs built from a
// Source pick the current SVID at every handshake, so rotation is hot and
// established connections are left alone.
type Source struct {
	td   spiffeid.TrustDomain
	auth Authority
	dir  string
	log  *slog.Logger
	now  func() time.Time

	svid    atomic.Pointer[held]
	bundle  atomic.Pointer[Bundle]
	revoked atomic.Pointer[revocations]
	saveMu  sync.Mutex // orders the writes of RevocationsFile
}

// held is the current SVID with its TLS form prepared once.
type held struct {
	svid *SVID
	cert *tls.Certificate
	// start is when the SVID's life began for renewal: the later of its
	// NotBefore and when the authority issued it to us, so that a CA that
	// backdates NotBefore does not make a fresh SVID look half-used.
	start time.Time
}

// renewAt is the SVID's half-life.
func (h *held) renewAt() time.Time {
	return h.start.Add(h.svid.Leaf().NotAfter.Sub(h.start) / 2)
}

type revocations struct {
	version int64
	serials map[string]struct{} // lower case
}

func newRevocations(version int64, serials []string) *revocations {
	r := &revocations{version: version, serials: make(map[string]struct{}, len(serials))}
	for _, sn := range serials {
		r.serials[strings.ToLower(sn)] = struct{}{}
	}
	return r
}

var errNoAuthority = errors.New("identity source has no authority")

// NewSource returns a Source with no SVID yet: call Enroll, Load or
// LoadOrEnroll next.
func NewSource(cfg Config) (*Source, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("identity source: trust domain is required")
	}
	s := &Source{td: cfg.TrustDomain, auth: cfg.Authority, dir: cfg.Dir, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.revoked.Store(&revocations{})
	return s, nil
}

// Current returns the current SVID, or nil before the first Enroll or Load.
// It may have expired: TLS configs refuse to present an expired SVID.
func (s *Source) Current() *SVID {
	if h := s.svid.Load(); h != nil {
		return h.svid
	}
	return nil
}

// Bundle returns the current trust bundle, or nil before the first Enroll,
// Load or SetBundle.
func (s *Source) Bundle() *Bundle { return s.bundle.Load() }

// SetBundle replaces the trust bundle, e.g. with one from a distribution
// snapshot. A bundle of another trust domain is refused.
func (s *Source) SetBundle(b *Bundle) error {
	if b == nil || b.TrustDomain != s.td {
		return fmt.Errorf("refusing trust bundle: not for trust domain %s", s.td)
	}
	s.bundle.Store(b)
	return nil
}

// Revoked reports whether the certificate with this serial (hex, as
// cert.SerialNumber.Text(16)) is in the revocation set.
func (s *Source) Revoked(serial string) bool {
	_, ok := s.revoked.Load().serials[strings.ToLower(serial)]
	return ok
}

// SetRevocations replaces the revocation set with version's, unless the
// current set is newer.
func (s *Source) SetRevocations(version int64, serials []string) {
	if !s.offerRevocations(newRevocations(version, serials)) {
		return
	}
	if s.dir != "" {
		s.saveRevocations()
	}
	if own := s.Current(); own != nil && s.Revoked(own.Serial()) {
		s.log.Error("own svid is revoked; peers will refuse it", "id", own.ID, "serial", own.Serial())
	}
}

// offerRevocations makes next the revocation set unless the current one is
// newer, and reports whether it did.
func (s *Source) offerRevocations(next *revocations) bool {
	for {
		cur := s.revoked.Load()
		if cur.version > next.version {
			return false
		}
		if s.revoked.CompareAndSwap(cur, next) {
			return true
		}
	}
}

// saveRevocations persists the current revocation set. The lock makes the
// newest set the last one written when updates race.
func (s *Source) saveRevocations() {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if err := saveRevocations(s.dir, s.revoked.Load()); err != nil {
		// The set is in force; only a restart without the server loses it.
		s.log.Warn("cannot persist the revocation set", "err", err)
	}
}

// restoreRevocations makes the set saved in dir current unless a newer one
// is. A damaged file is an error: starting as if nobody were revoked would
// fail open.
func (s *Source) restoreRevocations(dir string) error {
	r, err := loadRevocations(dir)
	if err != nil || r == nil {
		return err
	}
	if s.offerRevocations(r) {
		s.log.Info("revocation set restored", "version", r.version, "revoked", len(r.serials))
	}
	return nil
}

// Enroll generates a key, trades the one-time join token and a CSR for an
// SVID of id (zero: the ID the token is bound to), checks the answer,
// persists it (if the Source has a Dir) and makes it current.
func (s *Source) Enroll(ctx context.Context, id spiffeid.ID, token string) error {
	fail := func(err error) error { return fmt.Errorf("enroll %s: %w", cmp.Or(id.String(), "with join token"), err) }
	if s.auth == nil {
		return errNoAuthority
	}
	if !id.IsZero() && !id.MemberOf(s.td) {
		return fail(fmt.Errorf("not in trust domain %s", s.td))
	}
	key, csr, err := NewCSR(id)
	if err != nil {
		return fail(err)
	}
	svidPEM, bundlePEM, err := s.auth.Enroll(ctx, token, csr)
	if err != nil {
		return fail(err)
	}
	svid, bundle, err := s.check(id, key, svidPEM, bundlePEM)
	if err != nil {
		return fail(err)
	}
	if s.dir != "" {
		if err := SaveSVID(s.dir, svid, bundle); err != nil {
			return fail(err)
		}
	}
	s.set(svid, bundle, true)
	s.log.Info("svid enrolled", "id", svid.ID, "serial", svid.Serial(), "expires", svid.Leaf().NotAfter)
	return nil
}

// Load makes the SVID persisted in dir current, after checking that it is
// of the Source's trust domain, unexpired, and chains to its bundle, with
// the revocation set saved beside it.
func (s *Source) Load(dir string) error {
	svid, bundle, err := s.load(dir)
	if err != nil {
		return err
	}
	if err := s.restoreRevocations(dir); err != nil {
		return err
	}
	s.set(svid, bundle, false)
	return nil
}

// LoadOrEnroll is a workload's start: it reuses the SVID of id persisted in
// the Source's Dir if it is still valid, otherwise enrolls with token.
// Either way the revocation set saved in Dir is restored first.
func (s *Source) LoadOrEnroll(ctx context.Context, id spiffeid.ID, token string) error {
	err := errors.New("no directory to load from")
	if s.dir != "" {
		if err := s.restoreRevocations(s.dir); err != nil {
			return err
		}
		var svid *SVID
		var bundle *Bundle
		svid, bundle, err = s.load(s.dir)
		if err == nil && svid.ID != id {
			err = fmt.Errorf("persisted svid is for %s, not %s", svid.ID, id)
		}
		if err == nil {
			s.set(svid, bundle, false)
			s.log.Info("svid loaded", "id", id, "serial", svid.Serial(), "expires", svid.Leaf().NotAfter)
			return nil
		}
		if token != "" && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("persisted svid unusable; enrolling", "id", id, "err", err)
		}
	}
	if token == "" {
		return fmt.Errorf("no usable svid for %s and no join token: %w", id, err)
	}
	return s.Enroll(ctx, id, token)
}

func (s *Source) load(dir string) (*SVID, *Bundle, error) {
	svid, bundle, err := LoadSVID(dir)
	if err != nil {
		return nil, nil, err
	}
	if !svid.ID.MemberOf(s.td) {
		return nil, nil, fmt.Errorf("svid in %s: %s is not in trust domain %s", dir, svid.ID, s.td)
	}
	if _, err := bundle.VerifySVID(svid.Leaf(), s.now()); err != nil {
		return nil, nil, fmt.Errorf("svid in %s: %w", dir, err)
	}
	return svid, bundle, nil
}

// check validates what the authority returned for a CSR of id (zero: any)
// made with key.
func (s *Source) check(id spiffeid.ID, key crypto.Signer, svidPEM, bundlePEM []byte) (*SVID, *Bundle, error) {
	chain, err := ParseCertsPEM(svidPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("authority returned an invalid svid: %w", err)
	}
	bundle, err := ParseBundlePEM(s.td, bundlePEM)
	if err != nil {
		return nil, nil, fmt.Errorf("authority returned an invalid bundle: %w", err)
	}
	svid, err := NewSVID(chain, key)
	if err != nil {
		return nil, nil, fmt.Errorf("authority returned a bad svid: %w", err)
	}
	if !id.IsZero() && svid.ID != id {
		return nil, nil, fmt.Errorf("authority issued an svid for %s, expected %s", svid.ID, id)
	}
	if _, err := bundle.VerifySVID(svid.Leaf(), s.now()); err != nil {
		return nil, nil, fmt.Errorf("authority returned an svid that does not verify against its bundle: %w", err)
	}
	return svid, bundle, nil
}

// set makes svid and bundle current, the bundle first so that peers issued
// by a new intermediate are trusted by the time we present ours. fresh says
// the authority has just issued svid.
func (s *Source) set(svid *SVID, bundle *Bundle, fresh bool) {
	start := svid.Leaf().NotBefore
	if now := s.now(); fresh && now.After(start) {
		start = now
	}
	s.bundle.Store(bundle)
	s.svid.Store(&held{svid: svid, cert: svid.TLSCertificate(), start: start})
}

// certificate returns the SVID to present in a handshake; an expired one is
// an error, so the handshake fails instead of going on with a dead credential.
func (s *Source) certificate() (*tls.Certificate, error) {
	h := s.svid.Load()
	if h == nil {
		return nil, errors.New("no svid: identity source is not enrolled")
	}
	if leaf := h.svid.Leaf(); s.now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("own svid %s expired at %s and was not renewed", h.svid.ID, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return h.cert, nil
}

// Run keeps the Source fresh until ctx ends: it renews the SVID at half its
// lifetime (a new key each time), retrying failures with jittered
// exponential backoff while the current SVID stays in use, and follows the
// authority's revocation feed. An SVID that expires before a renewal
// succeeds is no longer presented (TLS fails closed); renewal keeps being
// attempted. Run returns nil when ctx is canceled.
func (s *Source) Run(ctx context.Context) error {
	if s.auth == nil {
		return errNoAuthority
	}
	if s.svid.Load() == nil {
		return errors.New("identity source has no svid: enroll or load first")
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.watchRevocations(ctx) })
	s.rotate(ctx)
	wg.Wait()
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func (s *Source) rotate(ctx context.Context) {
	for failures := 0; ; {
		cur := s.svid.Load()
		leaf := cur.svid.Leaf()
		lifetime := leaf.NotAfter.Sub(cur.start)
		wait := cur.renewAt().Sub(s.now())
		if failures > 0 {
			wait = retry.Backoff(failures, min(time.Second, lifetime/64), min(time.Minute, lifetime/16))
		}
		if !retry.Sleep(ctx, wait) {
			return
		}
		err := s.renew(ctx)
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		if s.now().After(leaf.NotAfter) {
			s.log.Error("svid expired and renewal failed; refusing mTLS until renewed", "id", cur.svid.ID, "expired", leaf.NotAfter, "attempt", failures, "err", err)
		} else {
			s.log.Warn("svid renewal failed; will retry", "id", cur.svid.ID, "expires", leaf.NotAfter, "attempt", failures, "err", err)
		}
	}
}

func (s *Source) renew(ctx context.Context) error {
	cur := s.svid.Load()
	id := cur.svid.ID
	key, csr, err := NewCSR(id)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	svidPEM, bundlePEM, err := s.auth.Renew(ctx, cur.cert, csr)
	if err != nil {
		return err
	}
	svid, bundle, err := s.check(id, key, svidPEM, bundlePEM)
	if err != nil {
		return err
	}
	s.set(svid, bundle, true)
	if s.dir != "" {
		if err := SaveSVID(s.dir, svid, bundle); err != nil {
			// The new SVID is in use; the persisted one stays valid until it expires.
			s.log.Warn("cannot persist renewed svid", "id", id, "err", err)
		}
	}
	s.log.Info("svid renewed", "id", id, "serial", svid.Serial(), "expires", svid.Leaf().NotAfter)
	return nil
}

// watchRevocations long-polls the authority for revocation list versions
// newer than the one held.
func (s *Source) watchRevocations(ctx context.Context) {
	for failures := 0; ; {
		after := s.revoked.Load().version
		pollCtx, cancel := context.WithTimeout(ctx, revocationWait+renewTimeout)
		up, err := s.auth.Trust(pollCtx, s.svid.Load().cert, after, revocationWait)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			s.log.Warn("revocation watch failed; will retry", "attempt", failures, "err", err)
			if !retry.Sleep(ctx, retry.Backoff(failures, time.Second, 30*time.Second)) {
				return
			}
			continue
		}
		failures = 0
		if up.Version <= after {
			continue
		}
		if len(up.BundlePEM) > 0 {
			b, err := ParseBundlePEM(s.td, up.BundlePEM)
			if err == nil {
				err = s.SetBundle(b)
			}
			if err == nil && s.dir != "" {
				// The bundle the feed sent is the one to start on next time,
				// not the one of the last enrollment or renewal.
				if werr := atomicfile.Write(filepath.Join(s.dir, BundleFile), b.PEM(), 0o644); werr != nil {
					s.log.Warn("cannot persist the trust bundle", "err", werr)
				}
			}
			if err != nil {
				// Keep the bundle we have; an invalid one is never applied.
				s.log.Error("refusing trust bundle from the feed", "version", up.Version, "err", err)
			}
		}
		s.SetRevocations(up.Version, up.Serials)
		s.log.Info("trust feed updated", "version", up.Version, "revoked", len(up.Serials))
	}
}
