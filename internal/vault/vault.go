// Package vault keeps Ward's secrets: values encrypted at rest with
// envelope encryption, released only through the control plane to the
// identities a SecretPolicy allows, and handed to processes at launch by
// `ward run`.
//
// Each version of a secret has a data key of its own (AES-256-GCM, 32
// random bytes) that seals the value with the secret's path and version as
// additional data, so a ciphertext copied to another path or version fails
// to open. The data key is itself sealed ("wrapped") by the key-encryption
// key, the one that seals the CA's keys, behind the small [KEK] interface
// so that an external KMS can supply it. Rotating the KEK rewraps the data
// keys and leaves the values' ciphertexts alone.
//
// A vault without a KEK is sealed: it lists nothing, reads nothing and
// writes nothing until [Vault.Unseal] is given the right key.
package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/store"
)

// KEK seals and opens data keys. *ca.KEK is one; a KMS client can be
// another. Open must fail, without returning anything, for data sealed by
// another key or changed since.
type KEK interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// Limits and defaults.
const (
	// MaxValueBytes bounds one secret value.
	MaxValueBytes = 64 << 10
	// DefaultRetention is how long a deleted secret's versions are kept.
	DefaultRetention = 30 * 24 * time.Hour
	// maxPutAttempts bounds retries of a put that lost a race.
	maxPutAttempts = 5
)

// metaKEKCheck names the meta setting that holds a random value sealed by
// the KEK: opening it tells the right key from a wrong one before any
// secret is touched.
const metaKEKCheck = "vault_kek_check"

const formatVersion = 1

// Errors a caller can act on.
var (
	ErrSealed   = errors.New("the vault is sealed: unseal it with the key-encryption key")
	ErrWrongKEK = errors.New("wrong key-encryption key: it does not open the vault")
	ErrTooLarge = fmt.Errorf("secret value exceeds %d bytes", MaxValueBytes)
	ErrEmpty    = errors.New("secret value is empty")
	// ErrIntegrity means a stored ciphertext or wrapped key did not
	// authenticate: tampered with, moved to another path or version, or
	// sealed by another key. Nothing of it is released.
	ErrIntegrity = errors.New("secret failed its integrity check: tampered with, moved, or sealed by another key")
	ErrNotFound  = store.ErrNotFound
	ErrDeleted   = store.ErrDeleted
)

// Store is what the vault needs of Ward's store.
type Store interface {
	store.Secrets
	GetMeta(ctx context.Context, key string) (string, error)
	SetMeta(ctx context.Context, key, value string) error
}

// Config configures a Vault.
type Config struct {
	Store Store
	// Events receives integrity failures and KEK changes (access is
	// audited by the API, which knows who asks); nil logs them.
	Events audit.Sink
	Log    *slog.Logger
	// Retention is how long a deleted secret's versions are kept
	// (default DefaultRetention).
	Retention time.Duration
}

// Vault is the secrets store of a server.
type Vault struct {
	cfg Config
	mu  sync.RWMutex
	kek KEK // nil while sealed
}

// New returns a sealed vault.
func New(cfg Config) *Vault {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Events == nil {
		cfg.Events = audit.SlogSink{Log: cfg.Log}
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	return &Vault{cfg: cfg}
}

// Sealed reports whether the vault has no KEK.
func (v *Vault) Sealed() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.kek == nil
}

// Retention is how long deleted secrets are kept.
func (v *Vault) Retention() time.Duration { return v.cfg.Retention }

// Unseal checks kek against the vault's check value (written on first
// use) and keeps it. A wrong key gets ErrWrongKEK and leaves the vault as
// it was.
func (v *Vault) Unseal(ctx context.Context, kek KEK) error {
	if kek == nil {
		return ErrWrongKEK
	}
	text, err := v.cfg.Store.GetMeta(ctx, metaKEKCheck)
	switch {
	case errors.Is(err, store.ErrNotFound):
		check, err := newCheck(kek)
		if err != nil {
			return err
		}
		if err := v.cfg.Store.SetMeta(ctx, metaKEKCheck, check); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if err := openCheck(kek, text); err != nil {
			v.emit(ctx, audit.Event{Type: "vault.unseal", Decision: "deny", Reason: "wrong_kek"})
			return err
		}
	}
	v.mu.Lock()
	v.kek = kek
	v.mu.Unlock()
	v.emit(ctx, audit.Event{Type: "vault.unseal", Decision: "allow"})
	return nil
}

// Seal forgets the KEK.
func (v *Vault) Seal() {
	v.mu.Lock()
	v.kek = nil
	v.mu.Unlock()
}

var checkAAD = []byte("ward vault kek check")

func newCheck(kek KEK) (string, error) {
	random := make([]byte, 32)
	if _, err := rand.Read(random); err != nil {
		return "", err
	}
	sealed, err := kek.Seal(random, checkAAD)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}

func openCheck(kek KEK, text string) error {
	sealed, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return fmt.Errorf("vault check value is damaged: %w", err)
	}
	pt, err := kek.Open(sealed, checkAAD)
	if err != nil {
		return ErrWrongKEK
	}
	clear(pt)
	return nil
}

func (v *Vault) currentKEK() (KEK, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.kek == nil {
		return nil, ErrSealed
	}
	return v.kek, nil
}

// valueAAD and keyAAD bind a ciphertext and a wrapped data key to the
// secret's path and version.
func valueAAD(path string, version int64) []byte {
	return []byte("ward vault value\x00" + path + "\x00" + strconv.FormatInt(version, 10))
}

func keyAAD(path string, version int64) []byte {
	return []byte("ward vault data key\x00" + path + "\x00" + strconv.FormatInt(version, 10))
}

// Version describes one version of a secret, never its value.
type Version struct {
	Path      string    `json:"path"`
	Version   int64     `json:"version"`
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
}

// Secret is a value released by Get. Call Wipe once it has been used.
type Secret struct {
	Version
	Value []byte
}

// Wipe zeroes the value.
func (s *Secret) Wipe() { clear(s.Value) }

// Put stores value as the next version of path, written by by (a SPIFFE
// ID). It does not keep value: the caller zeroes it.
func (v *Vault) Put(ctx context.Context, path string, value []byte, by string) (Version, error) {
	if err := CheckPath(path); err != nil {
		return Version{}, err
	}
	switch {
	case len(value) == 0:
		return Version{}, ErrEmpty
	case len(value) > MaxValueBytes:
		return Version{}, ErrTooLarge
	}
	// The read lock is held to the end: a KEK rotation waits for puts,
	// so no data key is wrapped with a key the rotation left behind.
	v.mu.RLock()
	defer v.mu.RUnlock()
	kek := v.kek
	if kek == nil {
		return Version{}, ErrSealed
	}
	for attempt := 0; ; attempt++ {
		base := int64(0)
		info, err := v.cfg.Store.GetSecretInfo(ctx, path)
		switch {
		case err == nil:
			base = info.Latest
		case !errors.Is(err, store.ErrNotFound):
			return Version{}, err
		}
		sv, err := seal(kek, path, base+1, value)
		if err != nil {
			return Version{}, err
		}
		sv.CreatedBy, sv.CreatedAt = by, time.Now().UTC().Truncate(time.Microsecond)
		n, err := v.cfg.Store.PutSecretVersion(ctx, base, sv)
		if errors.Is(err, store.ErrConflict) && attempt < maxPutAttempts {
			continue
		}
		if err != nil {
			return Version{}, err
		}
		return Version{Path: path, Version: n, CreatedBy: by, CreatedAt: sv.CreatedAt}, nil
	}
}

// seal encrypts value as version of path with a fresh data key.
func seal(kek KEK, path string, version int64, value []byte) (store.SecretVersion, error) {
	dk := make([]byte, 32)
	defer clear(dk)
	if _, err := rand.Read(dk); err != nil {
		return store.SecretVersion{}, err
	}
	aead, err := newGCM(dk)
	if err != nil {
		return store.SecretVersion{}, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return store.SecretVersion{}, err
	}
	ct := aead.Seal(append([]byte{formatVersion}, nonce...), nonce, value, valueAAD(path, version))
	wrapped, err := kek.Seal(dk, keyAAD(path, version))
	if err != nil {
		return store.SecretVersion{}, fmt.Errorf("wrap data key: %w", err)
	}
	return store.SecretVersion{Path: path, Version: version, Ciphertext: ct, WrappedKey: wrapped}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// open decrypts a stored version, checking it belongs to its path and
// version. It returns ErrIntegrity, and no plaintext, on any failure.
func open(kek KEK, sv store.SecretVersion) ([]byte, error) {
	dk, err := kek.Open(sv.WrappedKey, keyAAD(sv.Path, sv.Version))
	if err != nil {
		return nil, ErrIntegrity
	}
	defer clear(dk)
	if len(dk) != 32 {
		return nil, ErrIntegrity
	}
	aead, err := newGCM(dk)
	if err != nil {
		return nil, ErrIntegrity
	}
	ns := aead.NonceSize()
	ct := sv.Ciphertext
	if len(ct) < 1+ns+aead.Overhead() || ct[0] != formatVersion {
		return nil, ErrIntegrity
	}
	pt, err := aead.Open(nil, ct[1:1+ns], ct[1+ns:], valueAAD(sv.Path, sv.Version))
	if err != nil {
		return nil, ErrIntegrity
	}
	return pt, nil
}

// Get returns version (0: the newest) of path, decrypted. An integrity
// failure is audited (vault.integrity) and released as ErrIntegrity.
func (v *Vault) Get(ctx context.Context, path string, version int64) (*Secret, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	if version < 0 {
		return nil, fmt.Errorf("version %d: versions start at 1 (0 is the newest)", version)
	}
	// Held to the end, so that a KEK rotation never commits between
	// reading the wrapped key and unwrapping it with the old KEK.
	v.mu.RLock()
	defer v.mu.RUnlock()
	kek := v.kek
	if kek == nil {
		return nil, ErrSealed
	}
	sv, err := v.cfg.Store.GetSecretVersion(ctx, path, version)
	if err != nil {
		return nil, err
	}
	value, err := open(kek, sv)
	if err != nil {
		v.emit(ctx, audit.Event{Type: "vault.integrity", Subject: path, Decision: "deny", Reason: "integrity",
			Fields: map[string]string{"version": strconv.FormatInt(sv.Version, 10)}})
		return nil, err
	}
	return &Secret{Version: Version{Path: sv.Path, Version: sv.Version, CreatedBy: sv.CreatedBy, CreatedAt: sv.CreatedAt}, Value: value}, nil
}

// Info describes a secret in a list: never its value.
type Info struct {
	Path      string     `json:"path"`
	Latest    int64      `json:"latest"`
	CreatedAt time.Time  `json:"createdAt"`
	UpdatedAt time.Time  `json:"updatedAt"`
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
	DeletedBy string     `json:"deletedBy,omitempty"`
}

func infoOf(i store.SecretInfo) Info {
	out := Info{Path: i.Path, Latest: i.Latest, CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt, DeletedBy: i.DeletedBy}
	if !i.DeletedAt.IsZero() {
		d := i.DeletedAt
		out.DeletedAt = &d
	}
	return out
}

// List returns the secrets under prefix ("" for all; else a path or a
// path followed by '/'), deleted ones included.
func (v *Vault) List(ctx context.Context, prefix string) ([]Info, error) {
	if prefix != "" {
		if err := CheckPath(trimSlash(prefix)); err != nil {
			return nil, err
		}
	}
	if _, err := v.currentKEK(); err != nil {
		return nil, err
	}
	list, err := v.cfg.Store.ListSecrets(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Info, len(list))
	for i, s := range list {
		out[i] = infoOf(s)
	}
	return out, nil
}

func trimSlash(p string) string {
	if len(p) > 0 && p[len(p)-1] == '/' {
		return p[:len(p)-1]
	}
	return p
}

// Versions returns a secret's versions, newest first.
func (v *Vault) Versions(ctx context.Context, path string) (Info, []Version, error) {
	if err := CheckPath(path); err != nil {
		return Info{}, nil, err
	}
	if _, err := v.currentKEK(); err != nil {
		return Info{}, nil, err
	}
	info, err := v.cfg.Store.GetSecretInfo(ctx, path)
	if err != nil {
		return Info{}, nil, err
	}
	vs, err := v.cfg.Store.ListSecretVersions(ctx, path)
	if err != nil {
		return Info{}, nil, err
	}
	out := make([]Version, len(vs))
	for i, sv := range vs {
		out[i] = Version{Path: sv.Path, Version: sv.Version, CreatedBy: sv.CreatedBy, CreatedAt: sv.CreatedAt}
	}
	return infoOf(info), out, nil
}

// Delete makes path a tombstone: no version is read any more, and all
// are kept for the retention period, after which Purge removes them.
func (v *Vault) Delete(ctx context.Context, path, by string) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	if _, err := v.currentKEK(); err != nil {
		return err
	}
	return v.cfg.Store.DeleteSecret(ctx, path, by, time.Now())
}

// Purge removes the secrets deleted longer than the retention period ago.
func (v *Vault) Purge(ctx context.Context, now time.Time) ([]string, error) {
	paths, err := v.cfg.Store.PurgeSecrets(ctx, now.Add(-v.cfg.Retention))
	for _, p := range paths {
		v.emit(ctx, audit.Event{Type: "vault.purge", Subject: p, Decision: "allow"})
	}
	return paths, err
}

// RotateKEK rewraps every data key, and the check value, with next in one
// transaction, and then uses next. The values' ciphertexts are left as
// they are. If a data key does not open with the current KEK nothing
// changes and the error wraps ErrIntegrity.
func (v *Vault) RotateKEK(ctx context.Context, next KEK, by string) (int, error) {
	v.mu.Lock() // no put wraps with the old key meanwhile
	defer v.mu.Unlock()
	if v.kek == nil {
		return 0, ErrSealed
	}
	old := v.kek
	check, err := newCheck(next)
	if err != nil {
		return 0, err
	}
	n, err := v.cfg.Store.RewrapSecrets(ctx, func(sv store.SecretVersion) ([]byte, error) {
		aad := keyAAD(sv.Path, sv.Version)
		dk, err := old.Open(sv.WrappedKey, aad)
		if err != nil {
			return nil, ErrIntegrity
		}
		defer clear(dk)
		return next.Seal(dk, aad)
	}, map[string]string{metaKEKCheck: check})
	if err != nil {
		v.emit(ctx, audit.Event{Type: "vault.kek.rotate", Actor: by, Decision: "deny", Reason: "rewrap_failed"})
		return 0, err
	}
	v.kek = next
	v.emit(ctx, audit.Event{Type: "vault.kek.rotate", Actor: by, Decision: "allow", Fields: map[string]string{"rewrapped": strconv.Itoa(n)}})
	return n, nil
}

func (v *Vault) emit(ctx context.Context, e audit.Event) {
	e.Time = time.Now()
	if err := v.cfg.Events.Emit(ctx, e); err != nil {
		v.cfg.Log.Error("audit event not recorded", "type", e.Type, "err", err)
	}
}
