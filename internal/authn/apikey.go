package authn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
)

// API key format: "wak_" + prefix + "_" + secret, where prefix is 8
// lowercase base32 characters (5 random bytes) and secret is 32 random bytes
// in unpadded base64url (43 characters). The secret alphabet includes '_', so
// a key is parsed by position, never split on '_'.
const (
	apiKeyTag       = "wak_"
	apiKeyPrefixLen = 8
	apiKeySecretLen = 43 // base64.RawURLEncoding.EncodedLen(32)
	apiKeyLen       = len(apiKeyTag) + apiKeyPrefixLen + 1 + apiKeySecretLen

	// APIKeyScopeAll is the scope that makes a key valid on every route.
	APIKeyScopeAll = "*"
)

var prefixEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// APIKeyRecord is what Ward stores about an API key. It never holds the key
// itself.
//
// Hash is SHA-256 over the whole plaintext key. A plain hash (not a slow
// password hash, not an HMAC with a server pepper) is the right tool here:
// the secret is 256 random bits, so a leaked hash cannot be brute-forced
// whatever the hash's speed, and a fast hash keeps authentication cheap at
// the edge (a slow hash would hand attackers a CPU amplifier). A pepper
// would add a second secret that every gateway needs and whose loss
// invalidates every key, for no gain against a 256-bit secret.
type APIKeyRecord struct {
	ID      string   // the application the key belongs to (Principal.AppID)
	Prefix  string   // non-secret lookup handle, unique in the store
	Hash    [32]byte // SHA-256 of the plaintext key
	Scopes  []string // route names the key is valid for, or "*"
	Created time.Time
	Expires time.Time // zero: never expires
	Revoked bool
}

// NewAPIKey creates an API key for application id, valid on the routes in
// scopes (route names, or [APIKeyScopeAll]) until expires (zero: no expiry).
// It returns the plaintext, to be shown once and then forgotten, and the
// record to store. Prefixes are 40 random bits: the store must refuse a
// duplicate prefix and the caller then simply creates another key.
func NewAPIKey(id string, scopes []string, expires time.Time) (plaintext string, rec APIKeyRecord, err error) {
	if err := validateToken("application id", id); err != nil {
		return "", APIKeyRecord{}, err
	}
	if len(scopes) == 0 {
		return "", APIKeyRecord{}, errors.New("api key needs at least one scope (a route name or \"*\")")
	}
	for _, s := range scopes {
		if err := validateToken("scope", s); err != nil {
			return "", APIKeyRecord{}, err
		}
	}
	now := time.Now()
	if !expires.IsZero() && !expires.After(now) {
		return "", APIKeyRecord{}, errors.New("api key expiry is in the past")
	}
	var raw [5 + 32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", APIKeyRecord{}, fmt.Errorf("generate api key: %w", err)
	}
	prefix := prefixEncoding.EncodeToString(raw[:5])
	plaintext = apiKeyTag + prefix + "_" + base64.RawURLEncoding.EncodeToString(raw[5:])
	rec = APIKeyRecord{
		ID:      id,
		Prefix:  prefix,
		Hash:    sha256.Sum256([]byte(plaintext)),
		Scopes:  slices.Clone(scopes),
		Created: now.UTC().Truncate(time.Second),
		Expires: expires.UTC(),
	}
	return plaintext, rec, nil
}

func validateToken(what, s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("%s must be 1 to 253 characters", what)
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%s %q: only printable ASCII without spaces", what, s)
		}
	}
	return nil
}

// ParseAPIKey checks that s has exactly the shape of a Ward API key and
// returns its prefix. It is strict: wrong length, case, alphabet or a
// non-canonical secret encoding are all rejected. The error never contains s.
func ParseAPIKey(s string) (prefix string, err error) {
	if len(s) != apiKeyLen {
		return "", fail(ReasonAPIKeyMalformed, fmt.Sprintf("length %d, want %d", len(s), apiKeyLen), nil)
	}
	if s[:len(apiKeyTag)] != apiKeyTag {
		return "", fail(ReasonAPIKeyMalformed, "missing wak_ tag", nil)
	}
	prefix = s[len(apiKeyTag) : len(apiKeyTag)+apiKeyPrefixLen]
	if s[len(apiKeyTag)+apiKeyPrefixLen] != '_' {
		return "", fail(ReasonAPIKeyMalformed, "missing separator", nil)
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return "", fail(ReasonAPIKeyMalformed, "prefix is not lowercase base32", nil)
		}
	}
	secret := s[len(s)-apiKeySecretLen:]
	b, err := base64.RawURLEncoding.Strict().DecodeString(secret)
	if err != nil || len(b) != 32 {
		// The decoder's error names only an offset, but keep it out anyway.
		return "", fail(ReasonAPIKeyMalformed, "secret is not 32 bytes of canonical base64url", nil)
	}
	return prefix, nil
}

// ErrAPIKeyNotFound is returned by an [APIKeyStore] that has no record for a
// prefix.
var ErrAPIKeyNotFound = errors.New("api key not found")

// APIKeyStore looks API key records up by prefix. Get returns an error
// wrapping [ErrAPIKeyNotFound] when there is none; any other error is
// treated as the store being unavailable.
type APIKeyStore interface {
	Get(ctx context.Context, prefix string) (APIKeyRecord, error)
}

// MemoryAPIKeyStore is an in-memory [APIKeyStore], safe for concurrent use.
type MemoryAPIKeyStore struct {
	mu   sync.RWMutex
	recs map[string]APIKeyRecord
}

var _ APIKeyStore = (*MemoryAPIKeyStore)(nil)

// NewMemoryAPIKeyStore returns an empty store.
func NewMemoryAPIKeyStore() *MemoryAPIKeyStore {
	return &MemoryAPIKeyStore{recs: make(map[string]APIKeyRecord)}
}

// Add stores rec; it fails if the prefix is already taken.
func (s *MemoryAPIKeyStore) Add(rec APIKeyRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[rec.Prefix]; ok {
		return fmt.Errorf("api key prefix %s already exists", rec.Prefix)
	}
	rec.Scopes = slices.Clone(rec.Scopes)
	s.recs[rec.Prefix] = rec
	return nil
}

// Revoke marks the key with prefix as revoked.
func (s *MemoryAPIKeyStore) Revoke(prefix string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.recs[prefix]
	if !ok {
		return fmt.Errorf("revoke %s: %w", prefix, ErrAPIKeyNotFound)
	}
	rec.Revoked = true
	s.recs[prefix] = rec
	return nil
}

// Get implements [APIKeyStore].
func (s *MemoryAPIKeyStore) Get(_ context.Context, prefix string) (APIKeyRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, ok := s.recs[prefix]
	if !ok {
		return APIKeyRecord{}, ErrAPIKeyNotFound
	}
	rec.Scopes = slices.Clone(rec.Scopes)
	return rec, nil
}

// APIKeys authenticates API keys against a store.
type APIKeys struct {
	store APIKeyStore
}

// NewAPIKeys returns an authenticator over store.
func NewAPIKeys(store APIKeyStore) *APIKeys { return &APIKeys{store: store} }

// Authenticate checks the presented key for route at time now and returns
// the application's Principal (AppID, KeyPrefix, KeyScopes).
//
// A wrong secret for an existing prefix fails exactly like an unknown
// prefix (apikey_unknown), so guessing reveals nothing; revocation, expiry
// and scope are only reported once the whole key has matched. Digests are
// compared in constant time.
func (k *APIKeys) Authenticate(ctx context.Context, presented string, route string, now time.Time) (Principal, error) {
	prefix, err := ParseAPIKey(presented)
	if err != nil {
		return Principal{}, err
	}
	rec, err := k.store.Get(ctx, prefix)
	if errors.Is(err, ErrAPIKeyNotFound) {
		return Principal{}, fail(ReasonAPIKeyUnknown, "prefix "+prefix, nil)
	}
	if err != nil {
		return Principal{}, fail(ReasonAPIKeyUnavailable, "prefix "+prefix, err)
	}
	sum := sha256.Sum256([]byte(presented))
	if subtle.ConstantTimeCompare(sum[:], rec.Hash[:]) != 1 || rec.Prefix != prefix {
		return Principal{}, fail(ReasonAPIKeyUnknown, "prefix "+prefix, nil)
	}
	if rec.Revoked {
		return Principal{}, fail(ReasonAPIKeyRevoked, "prefix "+prefix, nil)
	}
	if !rec.Expires.IsZero() && !now.Before(rec.Expires) {
		return Principal{}, fail(ReasonAPIKeyExpired, "prefix "+prefix, nil)
	}
	if route == "" || !(slices.Contains(rec.Scopes, route) || slices.Contains(rec.Scopes, APIKeyScopeAll)) {
		return Principal{}, fail(ReasonAPIKeyOutOfScope, fmt.Sprintf("prefix %s, route %q", prefix, route), nil)
	}
	return Principal{
		AppID:     rec.ID,
		KeyPrefix: prefix,
		KeyScopes: rec.Scopes,
	}, nil
}

// LooksLikeAPIKey reports whether s carries the API key tag; the gateway
// uses it to tell an API key from a bearer JWT in one header.
func LooksLikeAPIKey(s string) bool { return strings.HasPrefix(s, apiKeyTag) }
