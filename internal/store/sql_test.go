package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wardsec/ward/internal/store/pgtest"
)

func TestRebind(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"a = ?", "a = $1"},
		{"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"},
		{"x = ?·y = ?", "x = $1·y = $2"},
	} {
		if got := rebind(tt.in); got != tt.want {
			t.Errorf("rebind(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMigrationVersions(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 {
			t.Fatalf("migration %d has version %d, want %d", i, m.version, i+1)
		}
	}
}

// backends opens each implementation on a target (a file or a database)
// that a test may open several times and inspect with database/sql.
var backends = []struct {
	name   string
	driver string
	target func(t *testing.T) string
	open   func(ctx context.Context, target string) (*SQL, error)
}{
	{"SQLite", "sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "ward.db") }, OpenSQLite},
	{"Postgres", "pgx", func(t *testing.T) string { return pgtest.Start(t) }, OpenPostgres},
}

func rawDB(t *testing.T, driver, target string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func schemaVersions(t *testing.T, db *sql.DB) (n, max int) {
	t.Helper()
	if err := db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	return n, max
}

func TestSchemaTooNew(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			target := b.target(t)
			s, err := b.open(t.Context(), target)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			db := rawDB(t, b.driver, target)
			if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (7, 0)`); err != nil {
				t.Fatal(err)
			}

			_, err = b.open(t.Context(), target)
			if !errors.Is(err, ErrSchemaTooNew) {
				t.Fatalf("open: got error %v, want ErrSchemaTooNew", err)
			}
			if want := fmt.Sprintf("store schema version 7 is newer than this ward supports (%d); upgrade ward", latestVersion()); !contains(err, want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
			if n, max := schemaVersions(t, db); n != latestVersion()+1 || max != 7 {
				t.Fatalf("schema_migrations has %d rows up to %d after a failed open", n, max)
			}
		})
	}
}

func TestReopen(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			target := b.target(t)
			for i := range 3 {
				s, err := b.open(t.Context(), target)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					err = s.SetMeta(t.Context(), "k", "v")
				} else if v, gerr := s.GetMeta(t.Context(), "k"); gerr != nil || v != "v" {
					t.Fatalf("reopened store: GetMeta = %q, %v", v, gerr)
				}
				if err := errors.Join(err, s.Close()); err != nil {
					t.Fatal(err)
				}
			}
			if n, max := schemaVersions(t, rawDB(t, b.driver, target)); n != latestVersion() || max != latestVersion() {
				t.Fatalf("schema_migrations has %d rows up to %d, want %d", n, max, latestVersion())
			}
		})
	}
}

// TestConcurrentOpen starts servers on a new database at the same time:
// exactly one of them must create the schema.
func TestConcurrentOpen(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			target := b.target(t)
			const n = 8
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					s, err := b.open(t.Context(), target)
					if err == nil {
						err = s.Close()
					}
					errs[i] = err
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if n, max := schemaVersions(t, rawDB(t, b.driver, target)); n != latestVersion() || max != latestVersion() {
				t.Fatalf("schema_migrations has %d rows up to %d, want %d", n, max, latestVersion())
			}
		})
	}
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
