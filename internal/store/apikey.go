package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wardsec/ward/internal/authn"
)

// feedAPIKeys is the row of feed_versions that counts API key changes.
const feedAPIKeys = "api_keys"

// errUnchanged rolls back a feed transaction that changed nothing, so that
// its version bump is undone.
var errUnchanged = errors.New("unchanged")

// changeFeed runs fn in a transaction that first bumps the version of feed
// (taking that row's lock, so that writers of one feed never deadlock each
// other on PostgreSQL). If fn returns errUnchanged the transaction is rolled
// back and changeFeed returns nil.
func (s *SQL) changeFeed(ctx context.Context, feed string, fn func(tx *sql.Tx) error) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := affected(tx.ExecContext(ctx, s.q(`UPDATE feed_versions SET version = version + 1 WHERE name = ?`), feed))
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("no version row for feed %s", feed)
		}
		return fn(tx)
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// CreateAPIKey implements Store.
func (s *SQL) CreateAPIKey(ctx context.Context, rec authn.APIKeyRecord, createdBy string) (err error) {
	defer wrap(&err, "create api key %s", rec.Prefix)
	if rec.Prefix == "" || rec.ID == "" || len(rec.Scopes) == 0 {
		return errors.New("api key needs a prefix, an application and scopes")
	}
	if rec.Revoked {
		// Revocations go through RevokeAPIKey, which keeps the version.
		return errors.New("api key is already revoked")
	}
	scopes, err := json.Marshal(rec.Scopes)
	if err != nil {
		return err
	}
	var expires sql.NullInt64
	if !rec.Expires.IsZero() {
		expires = sql.NullInt64{Int64: micros(rec.Expires), Valid: true}
	}
	return s.changeFeed(ctx, feedAPIKeys, func(tx *sql.Tx) error {
		n, err := affected(tx.ExecContext(ctx, s.q(`INSERT INTO api_keys
			(prefix, app_id, hash, scopes, created_at, expires_at, revoked_at, created_by)
			VALUES (?, ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT DO NOTHING`),
			rec.Prefix, rec.ID, rec.Hash[:], string(scopes), micros(rec.Created), expires, createdBy))
		if err == nil && n == 0 {
			err = ErrExists // rolls the version back too
		}
		return err
	})
}

// RevokeAPIKey implements Store.
func (s *SQL) RevokeAPIKey(ctx context.Context, prefix string) (err error) {
	defer wrap(&err, "revoke api key %s", prefix)
	return s.changeFeed(ctx, feedAPIKeys, func(tx *sql.Tx) error {
		n, err := affected(tx.ExecContext(ctx, s.q(`UPDATE api_keys SET revoked_at = ?
			WHERE prefix = ? AND revoked_at IS NULL`), micros(time.Now()), prefix))
		if err != nil || n == 1 {
			return err
		}
		var one int
		err = tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM api_keys WHERE prefix = ?`), prefix).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return err
		}
		return errUnchanged // already revoked
	})
}

// ListAPIKeys implements Store.
func (s *SQL) ListAPIKeys(ctx context.Context) (recs []authn.APIKeyRecord, err error) {
	defer wrap(&err, "list api keys")
	rows, err := s.r.QueryContext(ctx, `SELECT prefix, app_id, hash, scopes, created_at, expires_at, revoked_at
		FROM api_keys ORDER BY created_at, prefix`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var rec authn.APIKeyRecord
		var hash []byte
		var scopes string
		var created int64
		var expires, revoked sql.NullInt64
		if err := rows.Scan(&rec.Prefix, &rec.ID, &hash, &scopes, &created, &expires, &revoked); err != nil {
			return nil, err
		}
		if len(hash) != len(rec.Hash) {
			return nil, fmt.Errorf("api key %s: stored hash has %d bytes", rec.Prefix, len(hash))
		}
		copy(rec.Hash[:], hash)
		if err := json.Unmarshal([]byte(scopes), &rec.Scopes); err != nil {
			return nil, fmt.Errorf("api key %s: scopes: %w", rec.Prefix, err)
		}
		rec.Created = fromMicros(created)
		if expires.Valid {
			rec.Expires = fromMicros(expires.Int64)
		}
		rec.Revoked = revoked.Valid
		recs = append(recs, rec)
	}
	return recs, rows.Err()
}

// APIKeysVersion implements Store.
func (s *SQL) APIKeysVersion(ctx context.Context) (v int64, err error) {
	defer wrap(&err, "get api key version")
	err = s.r.QueryRowContext(ctx, s.q(`SELECT version FROM feed_versions WHERE name = ?`), feedAPIKeys).Scan(&v)
	return v, err
}
