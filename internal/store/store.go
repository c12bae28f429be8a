// Package store keeps Ward's durable state: certificate authorities, join
// tokens, issued certificates and revocations, API keys (and, later,
// resources).
//
// Two implementations share one interface and one test suite: SQLite in the
// server's data directory (the zero-setup default, pure Go, no cgo) and
// PostgreSQL for several servers sharing state. Both speak database/sql; the
// SQL is written once with '?' placeholders and rebound per dialect.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/wardsec/ward/internal/authn"
)

// Errors a caller can act on. Implementations wrap them with context.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrTokenUsed    = errors.New("join token already used")
	ErrTokenExpired = errors.New("join token expired")
	ErrTokenVoided  = errors.New("join token voided by a revocation")
	// ErrRevoked means the certificate a renewal presented is revoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrSchemaTooNew means the store was written by a newer Ward.
	ErrSchemaTooNew = errors.New("store schema is newer than this ward supports")
)

// Authority states.
const (
	AuthorityActive   = "active"   // root in the bundle, or the intermediate that issues
	AuthorityRetiring = "retiring" // intermediate still trusted, no longer issuing
	AuthorityRetired  = "retired"  // no longer in the bundle
)

// Authority kinds.
const (
	KindRoot         = "root"
	KindIntermediate = "intermediate"
)

// Authority is a CA certificate with its private key sealed by the
// key-encryption key. The store never sees the key in the clear.
type Authority struct {
	ID        string // hex of the certificate's SubjectKeyId
	Kind      string // KindRoot or KindIntermediate
	CertDER   []byte
	SealedKey []byte // private key encrypted with the KEK (never plaintext)
	State     string
	CreatedAt time.Time
}

// Token is a one-time join token, kept only as a SHA-256 hash.
type Token struct {
	Hash      []byte // sha256 of the token text
	SPIFFEID  string
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Certificate is an issued X.509-SVID (or operator/server credential).
type Certificate struct {
	Serial    string // lowercase hex, no leading zeros stripped beyond big.Int.Text(16)
	SPIFFEID  string
	IssuerID  string // Authority.ID of the issuing intermediate
	NotBefore time.Time
	NotAfter  time.Time
	DER       []byte
	// Renewal is true when this certificate was issued by renewing another.
	Renewal bool
	// RevokedAt is zero for a certificate that is not revoked.
	RevokedAt        time.Time
	RevocationReason int // RFC 5280 CRLReason
}

// Revoked reports whether the certificate was revoked.
func (c Certificate) Revoked() bool { return !c.RevokedAt.IsZero() }

// CertFilter narrows ListCertificates. Zero values mean "any".
type CertFilter struct {
	SPIFFEID string
	// ValidAt, when set, returns only certificates with NotAfter after it.
	ValidAt time.Time
	Limit   int
}

// RevocationList is the set of revoked, not yet expired certificates with
// a version that grows with every revocation.
type RevocationList struct {
	Version int64
	Entries []Certificate
}

// Store is the durable state behind a Ward server.
type Store interface {
	// PutAuthority inserts a new authority; ErrExists if the ID is taken.
	PutAuthority(ctx context.Context, a Authority) error
	// SetAuthorityState changes an authority's state; ErrNotFound if unknown.
	SetAuthorityState(ctx context.Context, id, state string) error
	// ListAuthorities returns every authority, oldest first.
	ListAuthorities(ctx context.Context) ([]Authority, error)

	// CreateToken records a join token by its hash.
	CreateToken(ctx context.Context, t Token) error
	// GetToken returns an unused token: ErrNotFound, ErrTokenUsed,
	// ErrTokenVoided or ErrTokenExpired (checked in that order against now).
	GetToken(ctx context.Context, hash []byte, now time.Time) (Token, error)
	// Enroll consumes the token and records the certificate in one
	// transaction. It fails like GetToken and then records nothing.
	Enroll(ctx context.Context, tokenHash []byte, now time.Time, c Certificate) error

	// InsertCertificate records a certificate issued without a token
	// (server, operator and edge credentials).
	InsertCertificate(ctx context.Context, c Certificate) error
	// Renew records c, the renewal of the certificate previous, only if
	// previous is known (else ErrNotFound) and unrevoked (else ErrRevoked).
	// It is serialized with RevokeSerial and RevokeID: a renewal racing a
	// revocation of its ID either finds previous revoked or is committed
	// before the revocation looks, and is then revoked with the rest.
	Renew(ctx context.Context, previous string, c Certificate) error
	// GetCertificate returns one certificate by serial; ErrNotFound.
	GetCertificate(ctx context.Context, serial string) (Certificate, error)
	// ListCertificates returns certificates, newest first.
	ListCertificates(ctx context.Context, f CertFilter) ([]Certificate, error)
	// CountExpiring counts unrevoked certificates whose NotAfter lies in (from, to].
	CountExpiring(ctx context.Context, from, to time.Time) (int, error)

	// RevokeSerial revokes one certificate, voids the unused join tokens of
	// its SPIFFE ID and bumps the revocation version. Revoking an already
	// revoked certificate returns it unchanged; ErrNotFound if unknown.
	RevokeSerial(ctx context.Context, serial string, reason int, at time.Time) (Certificate, error)
	// RevokeID revokes every unexpired, unrevoked certificate of a SPIFFE
	// ID and voids its unused join tokens. It returns what it revoked.
	RevokeID(ctx context.Context, spiffeID string, reason int, at time.Time) ([]Certificate, error)
	// Revocations returns the revoked certificates still unexpired at now.
	Revocations(ctx context.Context, now time.Time) (RevocationList, error)
	// RevocationVersion is cheap: just the version counter.
	RevocationVersion(ctx context.Context) (int64, error)
	// BumpRevocationVersion moves the version on without revoking anything
	// (the trust bundle changed) and returns the new version.
	BumpRevocationVersion(ctx context.Context) (int64, error)

	// CreateAPIKey records an API key (its hash, never the key) and bumps
	// the API key version; ErrExists if the prefix is taken.
	CreateAPIKey(ctx context.Context, rec authn.APIKeyRecord, createdBy string) error
	// RevokeAPIKey marks a key revoked and bumps the API key version.
	// Revoking a revoked key changes nothing; ErrNotFound if unknown.
	RevokeAPIKey(ctx context.Context, prefix string) error
	// ListAPIKeys returns every API key, revoked and expired ones included,
	// oldest first.
	ListAPIKeys(ctx context.Context) ([]authn.APIKeyRecord, error)
	// APIKeysVersion grows with every API key created or revoked.
	APIKeysVersion(ctx context.Context) (int64, error)

	// GetMeta and SetMeta keep small server settings (trust domain, ...).
	// GetMeta returns ErrNotFound for an unset key.
	GetMeta(ctx context.Context, key string) (string, error)
	SetMeta(ctx context.Context, key, value string) error

	Resources
	Secrets
	Flows
	Instances

	Close() error
}

// ErrConflict means a change lost a race with another (a newer version
// was recorded first).
var ErrConflict = errors.New("conflict: changed concurrently")

// ResourceVersion is one version of the whole set of resources (Services,
// AccessPolicies, Routes, Issuers): every change makes a new one.
type ResourceVersion struct {
	Version   int64 // 1, 2, 3...
	CreatedAt time.Time
	Author    string   // SPIFFE ID of the operator who made the change
	Action    string   // "apply", "delete" or "rollback"
	Changes   []string // "+Kind/name", "~Kind/name", "-Kind/name"
	Diff      string   // unified diff of the change
	Documents []byte   // the whole set after the change, as YAML documents
}

// Operator is a human operator (spiffe://TD/user/NAME) and their role.
type Operator struct {
	Name      string   // NAME of spiffe://TD/user/NAME
	Role      string   // "admin", "developer" or "auditor"
	Services  []string // the services a developer owns (sorted)
	CreatedBy string
	CreatedAt time.Time
}

// Resources is the versioned resource set and the operators who change it.
type Resources interface {
	// PutResourceVersion records v as version base+1 if the newest version
	// is base (0: none yet), in one transaction, and returns the new
	// version. Otherwise it records nothing and returns an error wrapping
	// ErrConflict. On PostgreSQL the transaction also notifies
	// ChannelResources.
	PutResourceVersion(ctx context.Context, base int64, v ResourceVersion) (int64, error)
	// GetResourceVersion returns one version, Documents included; ErrNotFound.
	GetResourceVersion(ctx context.Context, version int64) (ResourceVersion, error)
	// LatestResourceVersion returns the newest version; ErrNotFound when
	// nothing was ever applied.
	LatestResourceVersion(ctx context.Context) (ResourceVersion, error)
	// ResourcesVersion is the newest version number, 0 when none.
	ResourcesVersion(ctx context.Context) (int64, error)
	// ListResourceVersions returns versions newest first, without Documents
	// and Diff: at most limit (<= 0: 100), below before when before > 0.
	ListResourceVersions(ctx context.Context, before int64, limit int) ([]ResourceVersion, error)

	// PutOperator records an operator, replacing one of the same name.
	PutOperator(ctx context.Context, o Operator) error
	// GetOperator returns one operator; ErrNotFound.
	GetOperator(ctx context.Context, name string) (Operator, error)
	// ListOperators returns every operator by name.
	ListOperators(ctx context.Context) ([]Operator, error)
}
