package identity

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Authorizer decides whether a verified peer may talk to us; its error says
// why not.
type Authorizer func(spiffeid.ID) error

// AuthorizeID allows only want.
func AuthorizeID(want spiffeid.ID) Authorizer {
	return func(id spiffeid.ID) error {
		if id != want {
			return fmt.Errorf("peer %s is not authorized: expected %s", id, want)
		}
		return nil
	}
}

// AuthorizeAny allows any peer whose SVID verified against the bundle, i.e.
// any member of the bundle's trust domain.
func AuthorizeAny() Authorizer { return func(spiffeid.ID) error { return nil } }

// AuthorizeMemberOf allows any member of td.
func AuthorizeMemberOf(td spiffeid.TrustDomain) Authorizer {
	return func(id spiffeid.ID) error {
		if !id.MemberOf(td) {
			return fmt.Errorf("peer %s is not authorized: expected a member of %s", id, td)
		}
		return nil
	}
}

// Reasons a peer is refused, for audit records and metrics.
const (
	ReasonNoCertificate = "no_certificate"
	ReasonUntrusted     = "untrusted" // bad SVID, expired, or not chaining to the bundle
	ReasonRevoked       = "revoked"
	ReasonUnauthorized  = "unauthorized"
)

// PeerError is why the peer verification refused a connection. A TLS
// handshake that fails on it returns it unwrapped, so errors.As finds it.
type PeerError struct {
	Reason string      // one of the Reason constants
	ID     spiffeid.ID // the peer's claimed SPIFFE ID, zero if unknown
	Err    error
}

func (e *PeerError) Error() string { return e.Err.Error() }
func (e *PeerError) Unwrap() error { return e.Err }

// VerifyPeer returns a tls.Config.VerifyConnection function that accepts a
// peer only if its leaf is an SVID that chains to bundle() through the
// bundle's own intermediates, neither the leaf nor an intermediate of its
// chain is revoked (revoked may be nil), and authorize (nil: AuthorizeAny)
// allows its SPIFFE ID. It is the one peer check of both sides of mesh TLS;
// it needs no Source, so a CLI with a bundle file can use it.
func VerifyPeer(bundle func() *Bundle, revoked func(serial string) bool, authorize Authorizer) func(tls.ConnectionState) error {
	return verifyPeer(time.Now, bundle, revoked, authorize)
}

func verifyPeer(now func() time.Time, bundle func() *Bundle, revoked func(string) bool, authorize Authorizer) func(tls.ConnectionState) error {
	if authorize == nil {
		authorize = AuthorizeAny()
	}
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &PeerError{Reason: ReasonNoCertificate, Err: errors.New("peer presented no certificate")}
		}
		b := bundle()
		if b == nil {
			return &PeerError{Reason: ReasonUntrusted, Err: errors.New("no trust bundle to verify the peer against")}
		}
		id, chains, err := b.verify(cs.PeerCertificates[0], now())
		if err != nil {
			return &PeerError{Reason: ReasonUntrusted, ID: id, Err: fmt.Errorf("untrusted peer: %w", err)}
		}
		if revoked != nil {
			if err := checkRevoked(id, chains, revoked); err != nil {
				return &PeerError{Reason: ReasonRevoked, ID: id, Err: err}
			}
		}
		if err := authorize(id); err != nil {
			return &PeerError{Reason: ReasonUnauthorized, ID: id, Err: err}
		}
		return nil
	}
}

// checkRevoked accepts if some verified chain has neither a revoked leaf
// nor a revoked intermediate, and otherwise says what is revoked.
func checkRevoked(id spiffeid.ID, chains [][]*x509.Certificate, revoked func(string) bool) error {
	var first error
	for _, chain := range chains {
		err := revokedIn(id, chain, revoked)
		if err == nil {
			return nil
		}
		first = cmp.Or(first, err)
	}
	return first
}

func revokedIn(id spiffeid.ID, chain []*x509.Certificate, revoked func(string) bool) error {
	for i, c := range chain[:len(chain)-1] { // roots are not revoked, they are removed
		sn := c.SerialNumber.Text(16)
		switch {
		case !revoked(sn):
		case i == 0:
			return fmt.Errorf("peer certificate serial %s (%s) is revoked", sn, id)
		default:
			return fmt.Errorf("peer %s: intermediate certificate serial %s (%s) is revoked", id, sn, c.Subject.CommonName)
		}
	}
	return nil
}

// ServerTLSConfig returns a TLS 1.3 server config for the mesh: it presents
// the current SVID and requires a client SVID that passes VerifyPeer against
// the Source's bundle and revocations and authorize (nil: any member of the
// trust domain).
func (s *Source) ServerTLSConfig(authorize Authorizer) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		ClientAuth:       tls.RequireAnyClientCert, // verified in VerifyConnection
		GetCertificate:   func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certificate() },
		VerifyConnection: s.verifyPeer(authorize),
	}
}

// ClientTLSConfig returns a TLS 1.3 client config for the mesh: it presents
// the current SVID and accepts a server only if its SVID passes VerifyPeer
// against the Source's bundle and revocations and expect (e.g. AuthorizeID).
func (s *Source) ClientTLSConfig(expect Authorizer) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The default verification knows nothing of SPIFFE IDs, the bundle's
		// intermediates or revocations; VerifyConnection does it all.
		InsecureSkipVerify:   true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.certificate() },
		VerifyConnection:     s.verifyPeer(expect),
	}
}

func (s *Source) verifyPeer(authorize Authorizer) func(tls.ConnectionState) error {
	return verifyPeer(s.now, s.Bundle, s.Revoked, authorize)
}
