package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/store"
)

func newSecretVersion(path string, n int64) store.SecretVersion {
	return store.SecretVersion{
		Path:       path,
		Ciphertext: fmt.Appendf(nil, "ciphertext %s %d", path, n),
		WrappedKey: fmt.Appendf(nil, "wrapped %s %d", path, n),
		CreatedBy:  fmt.Sprintf("spiffe://test/user/op%d", n),
		CreatedAt:  t0.Add(time.Duration(n) * time.Minute),
	}
}

func putSecret(t *testing.T, s store.Store, path string, n int64) store.SecretVersion {
	t.Helper()
	v := newSecretVersion(path, n)
	got, err := s.PutSecretVersion(t.Context(), n-1, v)
	must(t, err)
	if got != n {
		t.Fatalf("PutSecretVersion(%s) on base %d = %d, want %d", path, n-1, got, n)
	}
	v.Version = n
	return v
}

func testSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetSecretVersion(ctx, "orders/db", 0)
	wantErr(t, "get of an unknown secret", err, store.ErrNotFound)
	v1 := putSecret(t, s, "orders/db", 1)
	v2 := putSecret(t, s, "orders/db", 2)
	putSecret(t, s, "orders/api", 1)
	putSecret(t, s, "catalog/db", 1)

	got, err := s.GetSecretVersion(ctx, "orders/db", 0)
	must(t, err)
	wantEqual(t, "newest version", got, v2)
	got, err = s.GetSecretVersion(ctx, "orders/db", 1)
	must(t, err)
	wantEqual(t, "version 1", got, v1)
	_, err = s.GetSecretVersion(ctx, "orders/db", 3)
	wantErr(t, "get of a version never written", err, store.ErrNotFound)

	_, err = s.PutSecretVersion(ctx, 1, newSecretVersion("orders/db", 9))
	wantErr(t, "put on a stale base", err, store.ErrConflict)
	_, err = s.PutSecretVersion(ctx, 0, newSecretVersion("orders/db", 9))
	wantErr(t, "put of version 1 again", err, store.ErrConflict)

	list, err := s.ListSecrets(ctx, "orders/")
	must(t, err)
	var paths []string
	for _, i := range list {
		paths = append(paths, i.Path)
	}
	wantEqual(t, "listed under orders/", paths, []string{"orders/api", "orders/db"})
	wantEqual(t, "latest of orders/db", list[1].Latest, int64(2))
	all, err := s.ListSecrets(ctx, "")
	must(t, err)
	wantEqual(t, "secrets listed", len(all), 3)

	vs, err := s.ListSecretVersions(ctx, "orders/db")
	must(t, err)
	wantEqual(t, "versions", len(vs), 2)
	if vs[0].Version != 2 || vs[1].Version != 1 || vs[0].CreatedBy != v2.CreatedBy || !vs[1].CreatedAt.Equal(v1.CreatedAt) {
		t.Fatalf("versions = %+v, want 2 then 1 with their authors and times", vs)
	}
	if vs[0].Ciphertext != nil || vs[0].WrappedKey != nil {
		t.Fatal("ListSecretVersions returned ciphertext or wrapped key")
	}
	_, err = s.ListSecretVersions(ctx, "nope/x")
	wantErr(t, "versions of an unknown secret", err, store.ErrNotFound)
}

func testSecretTombstones(t *testing.T, s store.Store) {
	ctx := t.Context()
	putSecret(t, s, "orders/db", 1)
	putSecret(t, s, "orders/db", 2)
	putSecret(t, s, "orders/keep", 1)
	wantErr(t, "delete of an unknown secret", s.DeleteSecret(ctx, "nope/x", "spiffe://test/user/a", t0), store.ErrNotFound)
	must(t, s.DeleteSecret(ctx, "orders/db", "spiffe://test/user/a", t0))
	must(t, s.DeleteSecret(ctx, "orders/db", "spiffe://test/user/b", t0.Add(time.Hour))) // unchanged
	_, err := s.GetSecretVersion(ctx, "orders/db", 1)
	wantErr(t, "get of a deleted secret", err, store.ErrDeleted)
	info, err := s.GetSecretInfo(ctx, "orders/db")
	must(t, err)
	if !info.DeletedAt.Equal(t0) || info.DeletedBy != "spiffe://test/user/a" {
		t.Fatalf("tombstone = %+v, want deleted at %v by user/a", info, t0)
	}
	vs, err := s.ListSecretVersions(ctx, "orders/db")
	must(t, err)
	wantEqual(t, "versions kept after delete", len(vs), 2)

	// A put brings it back with the next version.
	putSecret(t, s, "orders/db", 3)
	got, err := s.GetSecretVersion(ctx, "orders/db", 0)
	must(t, err)
	wantEqual(t, "version after revival", got.Version, int64(3))

	must(t, s.DeleteSecret(ctx, "orders/db", "spiffe://test/user/a", t0))
	purged, err := s.PurgeSecrets(ctx, t0)
	must(t, err)
	wantEqual(t, "purged at the deletion time", len(purged), 0)
	purged, err = s.PurgeSecrets(ctx, t0.Add(time.Microsecond))
	must(t, err)
	wantEqual(t, "purged after retention", purged, []string{"orders/db"})
	_, err = s.GetSecretInfo(ctx, "orders/db")
	wantErr(t, "info after purge", err, store.ErrNotFound)
	_, err = s.GetSecretVersion(ctx, "orders/keep", 0)
	must(t, err)
	// A purged path starts again at version 1.
	putSecret(t, s, "orders/db", 1)
}

func testRewrapSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	putSecret(t, s, "a/x", 1)
	putSecret(t, s, "a/x", 2)
	putSecret(t, s, "b/y", 1)
	// A failure half-way changes nothing, meta included.
	_, err := s.RewrapSecrets(ctx, func(v store.SecretVersion) ([]byte, error) {
		if v.Path == "b/y" {
			return nil, errors.New("boom")
		}
		return []byte("new"), nil
	}, map[string]string{"rewrap_test": "new"})
	if err == nil {
		t.Fatal("RewrapSecrets with a failing rewrap succeeded")
	}
	got, err := s.GetSecretVersion(ctx, "a/x", 1)
	must(t, err)
	wantEqual(t, "wrapped key after a failed rewrap", string(got.WrappedKey), "wrapped a/x 1")
	_, err = s.GetMeta(ctx, "rewrap_test")
	wantErr(t, "meta after a failed rewrap", err, store.ErrNotFound)

	var seen []string
	n, err := s.RewrapSecrets(ctx, func(v store.SecretVersion) ([]byte, error) {
		seen = append(seen, fmt.Sprintf("%s@%d:%s", v.Path, v.Version, v.WrappedKey))
		return fmt.Appendf(nil, "rewrapped %s %d", v.Path, v.Version), nil
	}, map[string]string{"rewrap_test": "new"})
	must(t, err)
	wantEqual(t, "rewrapped", n, 3)
	slices.Sort(seen)
	wantEqual(t, "rewrap saw", seen, []string{"a/x@1:wrapped a/x 1", "a/x@2:wrapped a/x 2", "b/y@1:wrapped b/y 1"})
	got, err = s.GetSecretVersion(ctx, "a/x", 2)
	must(t, err)
	wantEqual(t, "wrapped key after rewrap", string(got.WrappedKey), "rewrapped a/x 2")
	wantEqual(t, "ciphertext after rewrap", string(got.Ciphertext), "ciphertext a/x 2")
	m, err := s.GetMeta(ctx, "rewrap_test")
	must(t, err)
	wantEqual(t, "meta after rewrap", m, "new")
}

// testConcurrentSecretVersions: of writers racing for the same version,
// exactly one wins.
func testConcurrentSecretVersions(t *testing.T, s store.Store) {
	ctx := t.Context()
	putSecret(t, s, "race/x", 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	for i := range 8 {
		wg.Go(func() {
			_, err := s.PutSecretVersion(ctx, 1, newSecretVersion("race/x", int64(10+i)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, store.ErrConflict):
				lost++
			default:
				t.Errorf("racing put: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 || lost != 7 {
		t.Fatalf("racing puts: %d won, %d lost; want 1 and 7", won, lost)
	}
}
