package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/store"
)

func newAPIKey(prefix, app string, created, expires time.Time, scopes ...string) authn.APIKeyRecord {
	return authn.APIKeyRecord{
		ID: app, Prefix: prefix, Hash: sha256.Sum256([]byte("key " + prefix)),
		Scopes: scopes, Created: created, Expires: expires,
	}
}

func wantAPIKeysVersion(t *testing.T, s store.Store, want int64) {
	t.Helper()
	v, err := s.APIKeysVersion(t.Context())
	must(t, err)
	if v != want {
		t.Fatalf("api key version %d, want %d", v, want)
	}
}

func wantAPIKeys(t *testing.T, s store.Store, want ...authn.APIKeyRecord) {
	t.Helper()
	got, err := s.ListAPIKeys(t.Context())
	must(t, err)
	if len(got) != 0 || len(want) != 0 {
		wantEqual(t, "api keys", got, want)
	}
}

func testAPIKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	wantAPIKeys(t, s)
	wantAPIKeysVersion(t, s, 0)

	never := newAPIKey("aaaaaaaa", "billing", t0, time.Time{}, "public-orders", "public-invoices")
	expiring := newAPIKey("bbbbbbbb", "mobile", t0.Add(-time.Hour), t0.Add(30*24*time.Hour+time.Microsecond), authn.APIKeyScopeAll)
	must(t, s.CreateAPIKey(ctx, never, "spiffe://test/user/admin"))
	wantAPIKeysVersion(t, s, 1)
	must(t, s.CreateAPIKey(ctx, expiring, "spiffe://test/user/admin"))
	wantAPIKeysVersion(t, s, 2)
	// Oldest first; no expiry stays zero, not 1970.
	wantAPIKeys(t, s, expiring, never)

	// A duplicate prefix changes nothing, not even the version.
	dup := newAPIKey("aaaaaaaa", "other", t0.Add(time.Hour), time.Time{}, "x")
	wantErr(t, "CreateAPIKey(duplicate prefix)", s.CreateAPIKey(ctx, dup, "spiffe://test/user/admin"), store.ErrExists)
	wantAPIKeysVersion(t, s, 2)
	wantAPIKeys(t, s, expiring, never)

	// Incomplete or already revoked records are refused.
	revokedRec := newAPIKey("cccccccc", "billing", t0, time.Time{}, "x")
	revokedRec.Revoked = true
	for name, rec := range map[string]authn.APIKeyRecord{
		"no scopes": newAPIKey("dddddddd", "billing", t0, time.Time{}),
		"no app":    newAPIKey("eeeeeeee", "", t0, time.Time{}, "x"),
		"no prefix": newAPIKey("", "billing", t0, time.Time{}, "x"),
		"revoked":   revokedRec,
	} {
		if err := s.CreateAPIKey(ctx, rec, "spiffe://test/user/admin"); err == nil {
			t.Errorf("CreateAPIKey(%s) accepted", name)
		}
	}
	wantAPIKeysVersion(t, s, 2)
	wantAPIKeys(t, s, expiring, never)

	must(t, s.RevokeAPIKey(ctx, "aaaaaaaa"))
	wantAPIKeysVersion(t, s, 3)
	never.Revoked = true
	wantAPIKeys(t, s, expiring, never)

	// Again: no change and no new version.
	must(t, s.RevokeAPIKey(ctx, "aaaaaaaa"))
	wantAPIKeysVersion(t, s, 3)
	wantErr(t, "RevokeAPIKey(unknown)", s.RevokeAPIKey(ctx, "zzzzzzzz"), store.ErrNotFound)
	wantAPIKeysVersion(t, s, 3)
	wantAPIKeys(t, s, expiring, never)

	// API keys have their own version: certificate revocations leave it alone.
	insert(t, s, newCert("a1", "spiffe://test/a", t0, time.Hour))
	_, err := s.RevokeSerial(ctx, "a1", 1, t0)
	must(t, err)
	wantAPIKeysVersion(t, s, 3)
	wantVersion(t, s, 1)
}

// testConcurrentAPIKeys creates and revokes keys from many goroutines: every
// change gets its own version and none deadlocks.
func testConcurrentAPIKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	prefix := func(i int) string { return fmt.Sprintf("k%07d", i) }
	must(t, errors.Join(parallel(workers, func(i int) error {
		if err := s.CreateAPIKey(ctx, newAPIKey(prefix(i), "app", t0, time.Time{}, "r"), "op"); err != nil {
			return err
		}
		// Pairs race to revoke the even key, which the odd one of the
		// pair may find not created yet.
		if err := s.RevokeAPIKey(ctx, prefix(i/2*2)); !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})...))
	recs, err := s.ListAPIKeys(ctx)
	must(t, err)
	if len(recs) != workers {
		t.Fatalf("%d api keys, want %d", len(recs), workers)
	}
	revoked := 0
	for _, r := range recs {
		if r.Revoked {
			revoked++
		}
	}
	if revoked != workers/2 {
		t.Fatalf("%d api keys revoked, want %d", revoked, workers/2)
	}
	// One version per creation and one per key actually revoked.
	wantAPIKeysVersion(t, s, int64(workers+workers/2))
}
