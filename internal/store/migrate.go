package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// migrations build the schema, oldest first, with versions 1..n. Never edit
// one that has shipped: append another. The SQL is shared by both dialects;
// BLOB becomes BYTEA on PostgreSQL. Times are Unix microseconds.
var migrations = []struct {
	version int
	sql     string
}{
	{1, `
CREATE TABLE authorities (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('root', 'intermediate')),
	cert_der   BLOB NOT NULL,
	sealed_key BLOB,
	state      TEXT NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
	created_at BIGINT NOT NULL
);

CREATE TABLE join_tokens (
	hash       BLOB PRIMARY KEY,
	spiffe_id  TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at    BIGINT,
	voided_at  BIGINT
);
CREATE INDEX join_tokens_unused ON join_tokens (spiffe_id) WHERE used_at IS NULL AND voided_at IS NULL;

CREATE TABLE certificates (
	serial            TEXT PRIMARY KEY,
	spiffe_id         TEXT NOT NULL,
	issuer_id         TEXT NOT NULL,
	not_before        BIGINT NOT NULL,
	not_after         BIGINT NOT NULL,
	der               BLOB NOT NULL,
	renewal           BOOLEAN NOT NULL,
	revoked_at        BIGINT,
	revocation_reason INTEGER NOT NULL
);
CREATE INDEX certificates_spiffe_id ON certificates (spiffe_id, not_before);
CREATE INDEX certificates_not_before ON certificates (not_before);
CREATE INDEX certificates_unrevoked ON certificates (not_after) WHERE revoked_at IS NULL;
CREATE INDEX certificates_revoked ON certificates (not_after) WHERE revoked_at IS NOT NULL;

CREATE TABLE revocation_version (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	version BIGINT NOT NULL
);
INSERT INTO revocation_version (id, version) VALUES (1, 0);

CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`},
	{2, `
CREATE TABLE api_keys (
	prefix     TEXT PRIMARY KEY,
	app_id     TEXT NOT NULL,
	hash       BLOB NOT NULL,
	scopes     TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT,
	revoked_at BIGINT,
	created_by TEXT NOT NULL
);

CREATE TABLE feed_versions (
	name    TEXT PRIMARY KEY,
	version BIGINT NOT NULL
);
INSERT INTO feed_versions (name, version) VALUES ('api_keys', 0);
`},
	{3, `
CREATE TABLE resource_versions (
	version    BIGINT PRIMARY KEY,
	created_at BIGINT NOT NULL,
	author     TEXT NOT NULL,
	action     TEXT NOT NULL,
	changes    TEXT NOT NULL,
	diff       TEXT NOT NULL,
	documents  BLOB NOT NULL
);

CREATE TABLE operators (
	name       TEXT PRIMARY KEY,
	role       TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'auditor')),
	services   TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
`},
	{4, `
CREATE TABLE secrets (
	path       TEXT PRIMARY KEY,
	latest     BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	deleted_at BIGINT,
	deleted_by TEXT
);

CREATE TABLE secret_versions (
	path        TEXT NOT NULL,
	version     BIGINT NOT NULL,
	ciphertext  BLOB NOT NULL,
	wrapped_key BLOB NOT NULL,
	created_by  TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	PRIMARY KEY (path, version)
);
`},
	{5, `
CREATE TABLE flows (
	start_at   BIGINT NOT NULL,
	end_at     BIGINT NOT NULL,
	reporter   TEXT NOT NULL,
	source     TEXT NOT NULL,
	dest       TEXT NOT NULL,
	method     TEXT NOT NULL,
	path       TEXT NOT NULL,
	decision   TEXT NOT NULL,
	reason     TEXT NOT NULL,
	policy     TEXT NOT NULL,
	class      INTEGER NOT NULL,
	count      BIGINT NOT NULL,
	latency_us BIGINT NOT NULL,
	buckets    TEXT NOT NULL
);
CREATE INDEX flows_end_at ON flows (end_at);
CREATE INDEX flows_dest ON flows (dest, end_at);
`},
	{6, `
CREATE TABLE instances (
	id         TEXT PRIMARY KEY,
	service    TEXT NOT NULL,
	address    TEXT NOT NULL,
	spiffe_id  TEXT NOT NULL,
	serial     TEXT NOT NULL,
	labels     TEXT NOT NULL,
	started_at BIGINT NOT NULL,
	renewed_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);
CREATE INDEX instances_service ON instances (service, address);
CREATE INDEX instances_expires ON instances (expires_at);
CREATE INDEX instances_serial ON instances (serial);
INSERT INTO feed_versions (name, version) VALUES ('instances', 0);
`},
}

// latestVersion is the schema version this code writes.
func latestVersion() int { return migrations[len(migrations)-1].version }

// migrationLock is the PostgreSQL advisory lock that serializes migrations
// of servers starting at the same time.
const migrationLock = 0x77617264 // "ward"

// tooNewError says the store was written by a newer Ward.
type tooNewError struct{ have, known int }

func (e tooNewError) Error() string {
	return fmt.Sprintf("store schema version %d is newer than this ward supports (%d); upgrade ward", e.have, e.known)
}

func (e tooNewError) Unwrap() error { return ErrSchemaTooNew }

// migrate brings the schema up to date, one migration per transaction.
func (s *SQL) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateOne(ctx)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration, if there is one.
func (s *SQL) migrateOne(ctx context.Context) (done bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if s.pg {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, migrationLock)); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`); err != nil {
			return err
		}
		var have int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return err
		}
		switch {
		case have > latestVersion():
			return tooNewError{have, latestVersion()}
		case have == latestVersion():
			done = true
			return nil
		}
		m := migrations[have] // versions are 1..n
		ddl := m.sql
		if s.pg {
			ddl = strings.ReplaceAll(ddl, "BLOB", "BYTEA")
		}
		if _, err := tx.ExecContext(ctx, ddl); err != nil {
			return fmt.Errorf("migrate to schema version %d: %w", m.version, err)
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`),
			m.version, micros(time.Now()))
		return err
	})
	return done, err
}
