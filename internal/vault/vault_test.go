package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/store"
	"github.com/wardsec/ward/internal/store/pgtest"
	"github.com/wardsec/ward/internal/vault"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// backend is a real store and a raw connection to the same database, to
// change what is "on disk" behind the store's back.
type backend struct {
	name string
	open func(t *testing.T) (*store.SQL, *sql.DB)
}

var backends = []backend{
	{"SQLite", func(t *testing.T) (*store.SQL, *sql.DB) {
		path := filepath.Join(t.TempDir(), "ward.db")
		s, err := store.OpenSQLite(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, rawDB(t, "sqlite", path)
	}},
	{"Postgres", func(t *testing.T) (*store.SQL, *sql.DB) {
		dsn := pgtest.Start(t)
		s, err := store.OpenPostgres(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, rawDB(t, "pgx", dsn)
	}},
}

func rawDB(t *testing.T, driver, target string) *sql.DB {
	db, err := sql.Open(driver, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// exec runs a statement written with $1.. placeholders, which both
// drivers accept.
func exec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), query, args...); err != nil {
		t.Fatal(err)
	}
}

func newKEK(t *testing.T) *ca.KEK {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	k, err := ca.NewKEK(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func forEach(t *testing.T, fn func(t *testing.T, s *store.SQL, db *sql.DB)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s, db := b.open(t)
			fn(t, s, db)
		})
	}
}

func unsealed(t *testing.T, s vault.Store, kek vault.KEK, events audit.Sink) *vault.Vault {
	t.Helper()
	v := vault.New(vault.Config{Store: s, Events: events})
	if err := v.Unseal(t.Context(), kek); err != nil {
		t.Fatal(err)
	}
	return v
}

func put(t *testing.T, v *vault.Vault, path, value string) vault.Version {
	t.Helper()
	ver, err := v.Put(t.Context(), path, []byte(value), "spiffe://example.org/user/admin")
	if err != nil {
		t.Fatal(err)
	}
	return ver
}

func wantValue(t *testing.T, v *vault.Vault, path string, version int64, want string) {
	t.Helper()
	sec, err := v.Get(t.Context(), path, version)
	if err != nil {
		t.Fatalf("get %s@%d: %v", path, version, err)
	}
	if string(sec.Value) != want {
		t.Fatalf("get %s@%d = %q, want %q", path, version, sec.Value, want)
	}
}

func TestPutGetVersions(t *testing.T) {
	forEach(t, func(t *testing.T, s *store.SQL, db *sql.DB) {
		v := unsealed(t, s, newKEK(t), nil)
		put(t, v, "orders/db/password", "first")
		ver := put(t, v, "orders/db/password", "second")
		if ver.Version != 2 || ver.CreatedBy != "spiffe://example.org/user/admin" || time.Since(ver.CreatedAt) > time.Minute {
			t.Fatalf("second put = %+v", ver)
		}
		wantValue(t, v, "orders/db/password", 0, "second")
		wantValue(t, v, "orders/db/password", 1, "first")
		// At rest there is no plaintext.
		var ct []byte
		if err := db.QueryRowContext(t.Context(), `SELECT ciphertext FROM secret_versions WHERE version = 1`).Scan(&ct); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(ct, []byte("first")) {
			t.Fatal("the stored ciphertext holds the value in the clear")
		}
		info, vs, err := v.Versions(t.Context(), "orders/db/password")
		if err != nil || info.Latest != 2 || len(vs) != 2 || vs[0].Version != 2 {
			t.Fatalf("versions = %+v %+v, %v", info, vs, err)
		}
	})
}

func TestWrongKEKRefused(t *testing.T) {
	forEach(t, func(t *testing.T, s *store.SQL, _ *sql.DB) {
		rec := &audit.Recorder{}
		right := newKEK(t)
		put(t, unsealed(t, s, right, nil), "orders/db", "hunter2")
		v := vault.New(vault.Config{Store: s, Events: rec})
		if err := v.Unseal(t.Context(), newKEK(t)); !errors.Is(err, vault.ErrWrongKEK) {
			t.Fatalf("unseal with a wrong KEK: %v, want ErrWrongKEK", err)
		}
		if !v.Sealed() {
			t.Fatal("a wrong KEK unsealed the vault")
		}
		if _, err := v.Get(t.Context(), "orders/db", 0); !errors.Is(err, vault.ErrSealed) {
			t.Fatalf("get after a wrong KEK: %v, want ErrSealed", err)
		}
		if ev := rec.Events(); len(ev) != 1 || ev[0].Type != "vault.unseal" || ev[0].Reason != "wrong_kek" {
			t.Fatalf("events = %+v, want one vault.unseal denied for wrong_kek", ev)
		}
		if err := v.Unseal(t.Context(), right); err != nil {
			t.Fatal(err)
		}
		wantValue(t, v, "orders/db", 0, "hunter2")
	})
}

func TestSealedVaultRefusesEverything(t *testing.T) {
	s, _ := backends[0].open(t)
	v := vault.New(vault.Config{Store: s})
	ctx := t.Context()
	_, errPut := v.Put(ctx, "a/b", []byte("x"), "me")
	_, errGet := v.Get(ctx, "a/b", 0)
	_, errList := v.List(ctx, "")
	_, _, errVers := v.Versions(ctx, "a/b")
	errDel := v.Delete(ctx, "a/b", "me")
	_, errRot := v.RotateKEK(ctx, newKEK(t), "me")
	for i, err := range []error{errPut, errGet, errList, errVers, errDel, errRot} {
		if !errors.Is(err, vault.ErrSealed) {
			t.Errorf("operation %d on a sealed vault: %v, want ErrSealed", i, err)
		}
	}
	if n, _ := s.ListSecrets(ctx, ""); len(n) != 0 {
		t.Fatal("a sealed vault wrote a secret")
	}
}

func TestTamperedCiphertextFailsAndIsAudited(t *testing.T) {
	forEach(t, func(t *testing.T, s *store.SQL, db *sql.DB) {
		rec := &audit.Recorder{}
		v := unsealed(t, s, newKEK(t), rec)
		put(t, v, "orders/db", "hunter2")
		for _, tt := range []struct{ name, query string }{
			{"ciphertext", `UPDATE secret_versions SET ciphertext = $1 WHERE path = 'orders/db'`},
			{"wrapped key", `UPDATE secret_versions SET wrapped_key = $1 WHERE path = 'orders/db'`},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var orig []byte
				col := map[string]string{"ciphertext": "ciphertext", "wrapped key": "wrapped_key"}[tt.name]
				if err := db.QueryRowContext(t.Context(), `SELECT `+col+` FROM secret_versions WHERE path = 'orders/db'`).Scan(&orig); err != nil {
					t.Fatal(err)
				}
				bad := bytes.Clone(orig)
				bad[len(bad)-1] ^= 1
				exec(t, db, tt.query, bad)
				defer exec(t, db, tt.query, orig)
				before := len(rec.Events())
				sec, err := v.Get(t.Context(), "orders/db", 0)
				if !errors.Is(err, vault.ErrIntegrity) || sec != nil {
					t.Fatalf("get of a tampered %s: released=%v, %v; want no secret and ErrIntegrity", tt.name, sec != nil, err)
				}
				ev := rec.Events()[before:]
				if len(ev) != 1 || ev[0].Type != "vault.integrity" || ev[0].Subject != "orders/db" || ev[0].Decision != "deny" {
					t.Fatalf("events = %+v, want one vault.integrity deny for orders/db", ev)
				}
			})
		}
		wantValue(t, v, "orders/db", 0, "hunter2")
	})
}

func TestMovedCiphertextFails(t *testing.T) {
	forEach(t, func(t *testing.T, s *store.SQL, db *sql.DB) {
		v := unsealed(t, s, newKEK(t), &audit.Recorder{})
		put(t, v, "orders/db", "orders-secret")
		put(t, v, "catalog/db", "catalog-secret")
		put(t, v, "orders/api", "v1")
		put(t, v, "orders/api", "v2")
		// Another path's ciphertext and data key copied over catalog/db.
		exec(t, db, `UPDATE secret_versions SET ciphertext = (SELECT ciphertext FROM secret_versions WHERE path = 'orders/db'),
			wrapped_key = (SELECT wrapped_key FROM secret_versions WHERE path = 'orders/db') WHERE path = 'catalog/db'`)
		if sec, err := v.Get(t.Context(), "catalog/db", 0); !errors.Is(err, vault.ErrIntegrity) {
			t.Fatalf("get of a ciphertext moved to another path: released=%v, %v; want ErrIntegrity", sec != nil, err)
		}
		// Version 1 copied over version 2 (a rollback of the value).
		exec(t, db, `UPDATE secret_versions SET ciphertext = (SELECT ciphertext FROM secret_versions WHERE path = 'orders/api' AND version = 1),
			wrapped_key = (SELECT wrapped_key FROM secret_versions WHERE path = 'orders/api' AND version = 1) WHERE path = 'orders/api' AND version = 2`)
		if sec, err := v.Get(t.Context(), "orders/api", 2); !errors.Is(err, vault.ErrIntegrity) {
			t.Fatalf("get of a ciphertext moved to another version: released=%v, %v; want ErrIntegrity", sec != nil, err)
		}
		wantValue(t, v, "orders/db", 0, "orders-secret")
		wantValue(t, v, "orders/api", 1, "v1")
	})
}

func TestOversizedAndEmptyValuesRefused(t *testing.T) {
	s, _ := backends[0].open(t)
	v := unsealed(t, s, newKEK(t), nil)
	if _, err := v.Put(t.Context(), "a/b", make([]byte, vault.MaxValueBytes+1), "me"); !errors.Is(err, vault.ErrTooLarge) {
		t.Fatalf("oversized put: %v, want ErrTooLarge", err)
	}
	if _, err := v.Put(t.Context(), "a/b", nil, "me"); !errors.Is(err, vault.ErrEmpty) {
		t.Fatalf("empty put: %v, want ErrEmpty", err)
	}
	if _, err := v.Put(t.Context(), "a/b", make([]byte, vault.MaxValueBytes), "me"); err != nil {
		t.Fatalf("put of the largest value: %v", err)
	}
	if list, _ := s.ListSecrets(t.Context(), ""); len(list) != 1 {
		t.Fatalf("secrets stored = %d, want 1", len(list))
	}
}

func TestPathGrammar(t *testing.T) {
	good := []string{"orders/db/password", "a", "a/b.c/d-e/f_g", "0/1", strings.Repeat("a", 63)}
	bad := []string{"", "/orders/db", "orders/db/", "orders//db", "orders/../catalog", "orders/./db", "..", ".",
		"Orders/db", "orders/db password", "orders/db%2f", "orders\\db", "orders/db\x00", "orders/-db", "orders/db-",
		"orders/é", "orders/*", "a/b/c/d/e/f/g/h/i", strings.Repeat("a", 64), "orders/db;rm", "orders/$HOME"}
	for _, p := range good {
		if err := vault.CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q) = %v, want ok", p, err)
		}
	}
	for _, p := range bad {
		if err := vault.CheckPath(p); err == nil {
			t.Errorf("CheckPath(%q) accepted", p)
		}
	}
	s, _ := backends[0].open(t)
	v := unsealed(t, s, newKEK(t), nil)
	for _, p := range bad {
		if _, err := v.Put(t.Context(), p, []byte("x"), "me"); err == nil {
			t.Errorf("Put(%q) accepted", p)
		}
		if _, err := v.Get(t.Context(), p, 0); err == nil {
			t.Errorf("Get(%q) accepted", p)
		}
	}
	if list, _ := s.ListSecrets(t.Context(), ""); len(list) != 0 {
		t.Fatalf("bad paths stored %d secrets", len(list))
	}
}

func TestPatterns(t *testing.T) {
	for _, tt := range []struct {
		pattern, path string
		want          bool
	}{
		{"orders/db", "orders/db", true},
		{"orders/*", "orders/db", true},
		{"orders/*", "orders/db/password", false},
		{"orders/**", "orders/db/password", true},
		{"orders/**", "orders", false},
		{"*/db", "catalog/db", true},
		{"orders/db", "orders/dbx", false},
		{"orders", "orders/db", false},
	} {
		if err := vault.CheckPattern(tt.pattern); err != nil {
			t.Fatalf("CheckPattern(%q): %v", tt.pattern, err)
		}
		if got := vault.MatchPattern(tt.pattern, tt.path); got != tt.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
	for _, p := range []string{"", "orders/**/db", "orders//x", "orders/d*", "/orders/*", "../x"} {
		if vault.CheckPattern(p) == nil {
			t.Errorf("CheckPattern(%q) accepted", p)
		}
	}
}

func TestKEKRotationRewrapsWithoutReencrypting(t *testing.T) {
	forEach(t, func(t *testing.T, s *store.SQL, db *sql.DB) {
		oldKEK, newKEK2 := newKEK(t), newKEK(t)
		v := unsealed(t, s, oldKEK, &audit.Recorder{})
		put(t, v, "orders/db", "one")
		put(t, v, "orders/db", "two")
		put(t, v, "catalog/key", "three")
		cts := func() map[string]string {
			rows, err := db.QueryContext(t.Context(), `SELECT path, version, ciphertext, wrapped_key FROM secret_versions`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			m := map[string]string{}
			for rows.Next() {
				var p string
				var n int64
				var ct, wk []byte
				if err := rows.Scan(&p, &n, &ct, &wk); err != nil {
					t.Fatal(err)
				}
				m[p+"@"+string(rune('0'+n))+" ct"] = string(ct)
				m[p+"@"+string(rune('0'+n))+" wk"] = string(wk)
			}
			return m
		}
		before := cts()
		n, err := v.RotateKEK(t.Context(), newKEK2, "spiffe://example.org/user/admin")
		if err != nil || n != 3 {
			t.Fatalf("RotateKEK = %d, %v; want 3 rewrapped", n, err)
		}
		after := cts()
		for k, b := range before {
			if strings.HasSuffix(k, " ct") && after[k] != b {
				t.Errorf("%s: the value was re-encrypted", k)
			}
			if strings.HasSuffix(k, " wk") && after[k] == b {
				t.Errorf("%s: the data key was not rewrapped", k)
			}
		}
		wantValue(t, v, "orders/db", 1, "one")
		// After a restart: the old KEK no longer opens the vault, the new one does.
		restarted := vault.New(vault.Config{Store: s})
		if err := restarted.Unseal(t.Context(), oldKEK); !errors.Is(err, vault.ErrWrongKEK) {
			t.Fatalf("unseal with the old KEK after rotation: %v, want ErrWrongKEK", err)
		}
		if err := restarted.Unseal(t.Context(), newKEK2); err != nil {
			t.Fatal(err)
		}
		wantValue(t, restarted, "orders/db", 0, "two")
		wantValue(t, restarted, "orders/db", 1, "one")
		wantValue(t, restarted, "catalog/key", 0, "three")
	})
}

func TestKEKRotationWithADamagedKeyChangesNothing(t *testing.T) {
	forEach(t, func(t *testing.T, s *store.SQL, db *sql.DB) {
		oldKEK := newKEK(t)
		v := unsealed(t, s, oldKEK, &audit.Recorder{})
		put(t, v, "a/x", "one")
		put(t, v, "b/y", "two")
		exec(t, db, `UPDATE secret_versions SET wrapped_key = $1 WHERE path = 'b/y'`, []byte("garbage"))
		if _, err := v.RotateKEK(t.Context(), newKEK(t), "me"); !errors.Is(err, vault.ErrIntegrity) {
			t.Fatalf("rotation over a damaged key: %v, want ErrIntegrity", err)
		}
		wantValue(t, v, "a/x", 0, "one")
		restarted := vault.New(vault.Config{Store: s})
		if err := restarted.Unseal(t.Context(), oldKEK); err != nil {
			t.Fatalf("the old KEK no longer opens the vault after a failed rotation: %v", err)
		}
		wantValue(t, restarted, "a/x", 0, "one")
	})
}

func TestDeleteKeepsVersionsForRetention(t *testing.T) {
	forEach(t, func(t *testing.T, s *store.SQL, _ *sql.DB) {
		ctx := t.Context()
		v := vault.New(vault.Config{Store: s, Retention: time.Hour, Events: &audit.Recorder{}})
		if err := v.Unseal(ctx, newKEK(t)); err != nil {
			t.Fatal(err)
		}
		put(t, v, "orders/db", "one")
		put(t, v, "orders/db", "two")
		if err := v.Delete(ctx, "orders/db", "me"); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Get(ctx, "orders/db", 0); !errors.Is(err, vault.ErrDeleted) {
			t.Fatalf("get after delete: %v, want ErrDeleted", err)
		}
		info, vs, err := v.Versions(ctx, "orders/db")
		if err != nil || info.DeletedAt == nil || len(vs) != 2 {
			t.Fatalf("versions after delete = %+v %d, %v; want a tombstone with 2 versions", info, len(vs), err)
		}
		if purged, err := v.Purge(ctx, time.Now()); err != nil || len(purged) != 0 {
			t.Fatalf("purge within retention = %v, %v", purged, err)
		}
		if purged, err := v.Purge(ctx, time.Now().Add(2*time.Hour)); err != nil || len(purged) != 1 {
			t.Fatalf("purge after retention = %v, %v", purged, err)
		}
		if _, _, err := v.Versions(ctx, "orders/db"); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("versions after purge: %v, want ErrNotFound", err)
		}
	})
}

func TestValueNeverInEvents(t *testing.T) {
	s, db := backends[0].open(t)
	rec := &audit.Recorder{}
	v := unsealed(t, s, newKEK(t), rec)
	put(t, v, "orders/db", "s3cr3t-value")
	wantValue(t, v, "orders/db", 0, "s3cr3t-value")
	exec(t, db, `UPDATE secret_versions SET ciphertext = $1`, []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
	_, _ = v.Get(t.Context(), "orders/db", 0)
	if _, err := v.RotateKEK(context.Background(), newKEK(t), "me"); err != nil {
		t.Fatal(err)
	}
	for _, e := range rec.Events() {
		if strings.Contains(strings.Join([]string{e.Subject, e.Actor, e.Reason, e.Result}, " "), "s3cr3t") {
			t.Fatalf("event %+v holds the value", e)
		}
		for _, f := range e.Fields {
			if strings.Contains(f, "s3cr3t") {
				t.Fatalf("event %+v holds the value", e)
			}
		}
	}
}
