package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/ocsp"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/store"
)

// CRL and OCSP answer lifetimes. A CRL is re-signed at once after a
// revocation and at least every crlRefresh otherwise.
const (
	crlValidity  = 30 * time.Minute
	crlRefresh   = 10 * time.Minute
	ocspValidity = 10 * time.Minute
	// MaxOCSPRequest bounds what the responder parses.
	MaxOCSPRequest = 4 << 10
)

// ReasonSuperseded is the CRLReason for a credential replaced by a newer one.
const ReasonSuperseded = ocsp.Superseded

// Reasons maps the names operators use to RFC 5280 CRLReason codes.
var Reasons = map[string]int{
	"unspecified":          ocsp.Unspecified,
	"keyCompromise":        ocsp.KeyCompromise,
	"caCompromise":         ocsp.CACompromise,
	"affiliationChanged":   ocsp.AffiliationChanged,
	"superseded":           ReasonSuperseded,
	"cessationOfOperation": ocsp.CessationOfOperation,
}

// ParseReason returns the CRLReason code for a name ("" is unspecified).
func ParseReason(name string) (int, error) {
	if name == "" {
		return ocsp.Unspecified, nil
	}
	r, ok := Reasons[name]
	if !ok {
		return 0, fmt.Errorf("unknown revocation reason %q (one of keyCompromise, superseded, cessationOfOperation, affiliationChanged, caCompromise, unspecified)", name)
	}
	return r, nil
}

// RevokeSerial revokes one certificate.
func (c *CA) RevokeSerial(ctx context.Context, serial string, reason int, actor string) (store.Certificate, error) {
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok || n.Sign() <= 0 {
		return store.Certificate{}, refuse("bad_serial", fmt.Sprintf("serial %q is not a hexadecimal certificate serial", serial), nil)
	}
	cert, err := c.cfg.Store.RevokeSerial(ctx, SerialText(n), reason, c.now())
	if errors.Is(err, store.ErrNotFound) {
		return cert, refuse("not_found", fmt.Sprintf("no certificate with serial %s", SerialText(n)), nil)
	}
	if err != nil {
		return cert, err
	}
	c.revoked(ctx, actor, []store.Certificate{cert})
	return cert, nil
}

// RevokeID revokes every valid certificate of a SPIFFE ID and voids its
// unused join tokens.
func (c *CA) RevokeID(ctx context.Context, id spiffeid.ID, reason int, actor string) ([]store.Certificate, error) {
	if !id.MemberOf(c.cfg.TrustDomain) {
		return nil, refuse("bad_id", fmt.Sprintf("%s is outside trust domain %s", id, c.cfg.TrustDomain), nil)
	}
	certs, err := c.cfg.Store.RevokeID(ctx, id.String(), reason, c.now())
	if err != nil {
		return nil, err
	}
	c.revoked(ctx, actor, certs)
	return certs, nil
}

func (c *CA) revoked(ctx context.Context, actor string, certs []store.Certificate) {
	for _, cert := range certs {
		c.metrics.revoked.Inc()
		c.emit(ctx, audit.Event{Type: "ca.revoke", Actor: actor, Subject: cert.SPIFFEID, Decision: "allow",
			Fields: map[string]string{"serial": cert.Serial, "reason": fmt.Sprint(cert.RevocationReason)}})
	}
}

// Revocations returns the revoked, unexpired serials and the list's version.
func (c *CA) Revocations(ctx context.Context) (int64, []string, error) {
	rl, err := c.cfg.Store.Revocations(ctx, c.now())
	if err != nil {
		return 0, nil, err
	}
	serials := make([]string, len(rl.Entries))
	for i, e := range rl.Entries {
		serials[i] = e.Serial
	}
	return rl.Version, serials, nil
}

// WaitTrust returns the trust feed (revoked serials and the bundle) once
// its version exceeds after, polling the store until ctx is done. On ctx
// expiry it returns the current state (a long poll that timed out answers
// "no change"). A version change may come from another server sharing the
// store, so the authorities are re-read then.
func (c *CA) WaitTrust(ctx context.Context, after int64, poll time.Duration) (int64, []string, *identity.Bundle, error) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		v, err := c.cfg.Store.RevocationVersion(ctx)
		if err != nil && ctx.Err() == nil {
			return 0, nil, nil, err
		}
		if v > after || ctx.Err() != nil {
			ctx := context.WithoutCancel(ctx)
			if err := c.reloadIfChanged(ctx, v); err != nil {
				return 0, nil, nil, err
			}
			v, serials, err := c.Revocations(ctx)
			return v, serials, c.Bundle(), err
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// Sync re-reads the authorities if another server sharing the store
// changed them (the feed version moved).
func (c *CA) Sync(ctx context.Context) error {
	v, err := c.cfg.Store.RevocationVersion(ctx)
	if err != nil {
		return err
	}
	return c.reloadIfChanged(ctx, v)
}

// reloadIfChanged re-reads the authorities when the feed version moved
// since the last look.
func (c *CA) reloadIfChanged(ctx context.Context, version int64) error {
	if c.seenVersion.Swap(version) == version {
		return nil
	}
	return c.Reload(ctx)
}

type crlEntry struct {
	version int64
	made    time.Time
	der     []byte
}

// CRL returns the DER certificate revocation list of an authority, signed
// by it, re-signed when the revocation list changed or it grows old. The
// root's lists the intermediates it revoked: none, as Ward retires an
// intermediate by taking it out of the trust bundle instead.
func (c *CA) CRL(ctx context.Context, authorityID string) ([]byte, error) {
	issuer := c.st.Load().authority(authorityID)
	if issuer == nil || issuer.key == nil {
		return nil, refuse("not_found", "no such certificate authority", nil)
	}
	version, err := c.cfg.Store.RevocationVersion(ctx)
	if err != nil {
		return nil, err
	}
	now := c.now()
	c.crlMu.Lock()
	defer c.crlMu.Unlock()
	if e := c.crls[authorityID]; e != nil && e.version == version && now.Sub(e.made) < crlRefresh {
		return e.der, nil
	}
	rl, err := c.cfg.Store.Revocations(ctx, now)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.RevocationList{
		// CRL numbers must grow; time in milliseconds does across restarts.
		Number:     big.NewInt(now.UnixMilli()),
		ThisUpdate: now.Add(-backdate),
		NextUpdate: now.Add(crlValidity),
	}
	for _, e := range rl.Entries {
		if e.IssuerID != authorityID {
			continue
		}
		tmpl.ThisUpdate = notBefore(tmpl.ThisUpdate, e.RevokedAt, now)
		n, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("stored serial %q is not hexadecimal", e.Serial)
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: n, RevocationTime: e.RevokedAt, ReasonCode: e.RevocationReason,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer.cert, issuer.key)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	c.crls[authorityID] = &crlEntry{version: version, made: now, der: der}
	return der, nil
}

// notBefore moves a backdated thisUpdate (backdated for clocks behind ours)
// up to a revocation it reports, so that no CRL or OCSP answer dates a
// status before the revocation that made it (RFC 5280 5.1.2.6), never past
// now.
func notBefore(thisUpdate, revokedAt, now time.Time) time.Time {
	if revokedAt.After(thisUpdate) {
		thisUpdate = revokedAt
	}
	if thisUpdate.After(now) {
		thisUpdate = now
	}
	return thisUpdate
}

// AuthorityCertificate returns the DER certificate of the root or of a
// trusted intermediate, by authority ID: what an issued certificate's AIA
// caIssuers URL serves.
func (c *CA) AuthorityCertificate(authorityID string) ([]byte, error) {
	a := c.st.Load().authority(authorityID)
	if a == nil {
		return nil, refuse("not_found", "no such certificate authority", nil)
	}
	return a.cert.Raw, nil
}

// authority returns the root or trusted intermediate with ID id, or nil.
func (s *state) authority(id string) *signer {
	if s.root.rec.ID == id {
		return s.root
	}
	for _, sg := range s.trusted {
		if sg.rec.ID == id {
			return sg
		}
	}
	return nil
}

// OCSP answers an RFC 6960 request (DER). Malformed requests get an error
// (the HTTP layer answers malformedRequest); a request for a CA that is not
// ours gets an unauthorized response.
func (c *CA) OCSP(ctx context.Context, reqDER []byte) ([]byte, error) {
	if len(reqDER) > MaxOCSPRequest {
		return nil, refuse("malformed", "OCSP request too large", nil)
	}
	req, err := ocsp.ParseRequest(reqDER)
	if err != nil {
		return nil, refuse("malformed", "malformed OCSP request", err)
	}
	if req.SerialNumber == nil {
		return nil, refuse("malformed", "OCSP request without serial", nil)
	}
	issuer := c.issuerByKeyHash(req.HashAlgorithm, req.IssuerKeyHash)
	if issuer == nil {
		return ocsp.UnauthorizedErrorResponse, nil
	}
	now := c.now()
	tmpl := ocsp.Response{
		SerialNumber: req.SerialNumber,
		ThisUpdate:   now.Add(-backdate),
		NextUpdate:   now.Add(ocspValidity),
		Status:       ocsp.Good,
	}
	rec, err := c.cfg.Store.GetCertificate(ctx, SerialText(req.SerialNumber))
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && rec.IssuerID != issuer.rec.ID):
		tmpl.Status = ocsp.Unknown
	case err != nil:
		return nil, err
	case rec.Revoked():
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, rec.RevokedAt, rec.RevocationReason
		tmpl.ThisUpdate = notBefore(tmpl.ThisUpdate, rec.RevokedAt, now)
	}
	return ocsp.CreateResponse(issuer.cert, issuer.cert, tmpl, issuer.key)
}

func (c *CA) issuerByKeyHash(h crypto.Hash, keyHash []byte) *signer {
	if !h.Available() {
		return nil
	}
	for _, s := range c.st.Load().trusted {
		sum := h.New()
		sum.Write(subjectPublicKeyBits(s.cert.RawSubjectPublicKeyInfo))
		if string(sum.Sum(nil)) == string(keyHash) && s.key != nil {
			return s
		}
	}
	return nil
}

// subjectPublicKeyBits is what an OCSP issuerKeyHash and a subject key ID
// cover: the BIT STRING of a DER SubjectPublicKeyInfo, without tag and
// length.
func subjectPublicKeyBits(spkiDER []byte) []byte {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spkiDER, &spki); err != nil {
		return nil
	}
	return spki.PublicKey.RightAlign()
}

// Rotate introduces a new intermediate that issues from now on; the old
// one stays in the bundle (retiring) so its SVIDs keep validating until
// Retire removes it.
func (c *CA) Rotate(ctx context.Context, actor string) (store.Authority, error) {
	s := c.st.Load()
	next, err := c.newAuthority(store.KindIntermediate, s.root)
	if err != nil {
		return store.Authority{}, refuse("cannot_rotate", err.Error(), nil)
	}
	if err := c.putSigner(ctx, next); err != nil {
		return store.Authority{}, err
	}
	for _, old := range s.trusted {
		if old.rec.State == store.AuthorityActive {
			if err := c.cfg.Store.SetAuthorityState(ctx, old.rec.ID, store.AuthorityRetiring); err != nil {
				return store.Authority{}, err
			}
		}
	}
	if err := c.trustChanged(ctx); err != nil {
		return store.Authority{}, err
	}
	c.emit(ctx, audit.Event{Type: "ca.rotate", Actor: actor, Subject: next.rec.ID, Decision: "allow"})
	return next.rec, nil
}

// Retire removes a retiring intermediate from the bundle: SVIDs it issued
// stop validating. The active intermediate cannot be retired, nor, unless
// force, one whose certificates are still valid and unrevoked.
func (c *CA) Retire(ctx context.Context, id string, force bool, actor string) error {
	for _, sg := range c.st.Load().trusted {
		if sg.rec.ID != id {
			continue
		}
		if sg.rec.State == store.AuthorityActive {
			return refuse("active", "the active intermediate cannot be retired; rotate first", nil)
		}
		if !force {
			if n, last, err := c.liveCertificates(ctx, id); err != nil {
				return err
			} else if n > 0 {
				return refuse("in_use", fmt.Sprintf("%d certificates issued by %s are still valid (the last expires %s); wait for them to be renewed or expire, or force it", n, id, last.UTC().Format(time.RFC3339)), nil)
			}
		}
		if err := c.cfg.Store.SetAuthorityState(ctx, id, store.AuthorityRetired); err != nil {
			return err
		}
		c.emit(ctx, audit.Event{Type: "ca.retire", Actor: actor, Subject: id, Decision: "allow"})
		return c.trustChanged(ctx)
	}
	return refuse("not_found", fmt.Sprintf("no trusted intermediate %q", id), nil)
}

// liveCertificates counts the unexpired, unrevoked certificates an
// authority issued and returns the latest expiry among them.
func (c *CA) liveCertificates(ctx context.Context, authorityID string) (int, time.Time, error) {
	certs, err := c.cfg.Store.ListCertificates(ctx, store.CertFilter{ValidAt: c.now()})
	if err != nil {
		return 0, time.Time{}, err
	}
	n, last := 0, time.Time{}
	for _, cert := range certs {
		if cert.IssuerID == authorityID && !cert.Revoked() {
			n++
			if cert.NotAfter.After(last) {
				last = cert.NotAfter
			}
		}
	}
	return n, last, nil
}

// IssuerID is the ID of the intermediate that signs now.
func (c *CA) IssuerID() string { return c.st.Load().issuer(c.now(), c.cfg.PublishDelay).rec.ID }

// trustChanged reloads the authorities and moves the trust feed's version
// so that every watching workload fetches the new bundle.
func (c *CA) trustChanged(ctx context.Context) error {
	if err := c.Reload(ctx); err != nil {
		return err
	}
	_, err := c.cfg.Store.BumpRevocationVersion(ctx)
	return err
}

// Authorities lists the CA certificates with their state.
func (c *CA) Authorities(ctx context.Context) ([]store.Authority, []*x509.Certificate, error) {
	auths, err := c.cfg.Store.ListAuthorities(ctx)
	if err != nil {
		return nil, nil, err
	}
	certs := make([]*x509.Certificate, len(auths))
	for i, a := range auths {
		if certs[i], err = x509.ParseCertificate(a.CertDER); err != nil {
			return nil, nil, err
		}
	}
	return auths, certs, nil
}
