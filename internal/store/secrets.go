package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrDeleted means the secret was deleted (a tombstone): its versions are
// kept until the retention period ends, but none is read.
var ErrDeleted = errors.New("secret deleted")

// SecretVersion is one version of a secret as the store keeps it: the
// value sealed with a data key of its own, and that data key wrapped by the
// key-encryption key. The store never sees a value or a data key in the
// clear.
type SecretVersion struct {
	Path       string
	Version    int64 // 1, 2, 3... per path
	Ciphertext []byte
	WrappedKey []byte
	CreatedBy  string // SPIFFE ID of who wrote it
	CreatedAt  time.Time
}

// SecretInfo describes a secret without any of its versions' contents.
type SecretInfo struct {
	Path      string
	Latest    int64
	CreatedAt time.Time
	UpdatedAt time.Time
	// DeletedAt is zero unless the secret is a tombstone.
	DeletedAt time.Time
	DeletedBy string
}

// Secrets keeps the vault's ciphertexts.
type Secrets interface {
	// PutSecretVersion records v as version base+1 of v.Path if the newest
	// version is base (0: none yet), in one transaction, and returns the
	// new version; otherwise it records nothing and returns an error
	// wrapping ErrConflict. A deleted secret comes back with the new
	// version, numbered after the ones it kept.
	PutSecretVersion(ctx context.Context, base int64, v SecretVersion) (int64, error)
	// GetSecretVersion returns one version (0: the newest) of a secret
	// that is not deleted; ErrNotFound or ErrDeleted.
	GetSecretVersion(ctx context.Context, path string, version int64) (SecretVersion, error)
	// GetSecretInfo returns what is known of a secret, deleted or not;
	// ErrNotFound.
	GetSecretInfo(ctx context.Context, path string) (SecretInfo, error)
	// ListSecrets returns the secrets whose path starts with prefix ("":
	// all), deleted ones included, by path.
	ListSecrets(ctx context.Context, prefix string) ([]SecretInfo, error)
	// ListSecretVersions returns the versions of a secret, newest first,
	// without Ciphertext and WrappedKey; ErrNotFound.
	ListSecretVersions(ctx context.Context, path string) ([]SecretVersion, error)
	// DeleteSecret makes a secret a tombstone; deleting a deleted secret
	// changes nothing; ErrNotFound.
	DeleteSecret(ctx context.Context, path, by string, at time.Time) error
	// PurgeSecrets removes, with all their versions, the secrets deleted
	// before cutoff, and returns their paths.
	PurgeSecrets(ctx context.Context, cutoff time.Time) ([]string, error)
	// RewrapSecrets replaces every version's WrappedKey with what rewrap
	// returns for it, and sets the meta settings in meta, all in one
	// transaction: if rewrap fails for one, nothing changes. It returns how
	// many versions it rewrapped.
	RewrapSecrets(ctx context.Context, rewrap func(v SecretVersion) ([]byte, error), meta map[string]string) (int, error)
}

var _ Secrets = (*SQL)(nil)

// PutSecretVersion implements Secrets.
func (s *SQL) PutSecretVersion(ctx context.Context, base int64, v SecretVersion) (version int64, err error) {
	defer wrap(&err, "record version %d of secret %s", base+1, v.Path)
	if v.Path == "" || len(v.Ciphertext) == 0 || len(v.WrappedKey) == 0 || v.CreatedBy == "" {
		return 0, errors.New("a secret version needs a path, a ciphertext, a wrapped key and an author")
	}
	at := micros(v.CreatedAt)
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var n int64
		var err error
		if base == 0 {
			n, err = affected(tx.ExecContext(ctx, s.q(`INSERT INTO secrets (path, latest, created_at, updated_at)
				VALUES (?, 1, ?, ?) ON CONFLICT DO NOTHING`), v.Path, at, at))
		} else {
			n, err = affected(tx.ExecContext(ctx, s.q(`UPDATE secrets SET latest = ?, updated_at = ?, deleted_at = NULL, deleted_by = NULL
				WHERE path = ? AND latest = ?`), base+1, at, v.Path, base))
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: version %d of %s was recorded by another change", ErrConflict, base+1, v.Path)
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO secret_versions
			(path, version, ciphertext, wrapped_key, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
			v.Path, base+1, v.Ciphertext, v.WrappedKey, v.CreatedBy, at)
		return err
	})
	if err != nil {
		return 0, err
	}
	return base + 1, nil
}

// GetSecretVersion implements Secrets, in one query.
func (s *SQL) GetSecretVersion(ctx context.Context, path string, version int64) (v SecretVersion, err error) {
	defer wrap(&err, "get version %d of secret %s", version, path)
	var deleted, at sql.NullInt64
	var vpath, by sql.NullString
	var n sql.NullInt64
	err = s.r.QueryRowContext(ctx, s.q(`SELECT s.deleted_at, v.path, v.version, v.ciphertext, v.wrapped_key, v.created_by, v.created_at
		FROM secrets s LEFT JOIN secret_versions v
		ON v.path = s.path AND v.version = (CASE WHEN ? = 0 THEN s.latest ELSE ? END)
		WHERE s.path = ?`), version, version, path).
		Scan(&deleted, &vpath, &n, &v.Ciphertext, &v.WrappedKey, &by, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return SecretVersion{}, ErrNotFound
	case err != nil:
		return SecretVersion{}, err
	case deleted.Valid:
		return SecretVersion{}, ErrDeleted
	case !vpath.Valid:
		return SecretVersion{}, ErrNotFound
	}
	v.Path, v.Version, v.CreatedBy, v.CreatedAt = vpath.String, n.Int64, by.String, fromMicros(at.Int64)
	return v, nil
}

const secretColumns = `path, latest, created_at, updated_at, deleted_at, deleted_by`

func scanSecret(sc interface{ Scan(...any) error }) (SecretInfo, error) {
	var i SecretInfo
	var created, updated int64
	var deleted sql.NullInt64
	var by sql.NullString
	if err := sc.Scan(&i.Path, &i.Latest, &created, &updated, &deleted, &by); err != nil {
		return i, err
	}
	i.CreatedAt, i.UpdatedAt = fromMicros(created), fromMicros(updated)
	if deleted.Valid {
		i.DeletedAt, i.DeletedBy = fromMicros(deleted.Int64), by.String
	}
	return i, nil
}

// GetSecretInfo implements Secrets.
func (s *SQL) GetSecretInfo(ctx context.Context, path string) (i SecretInfo, err error) {
	defer wrap(&err, "get secret %s", path)
	i, err = scanSecret(s.r.QueryRowContext(ctx, s.q(`SELECT `+secretColumns+` FROM secrets WHERE path = ?`), path))
	if errors.Is(err, sql.ErrNoRows) {
		return SecretInfo{}, ErrNotFound
	}
	return i, err
}

// ListSecrets implements Secrets.
func (s *SQL) ListSecrets(ctx context.Context, prefix string) (out []SecretInfo, err error) {
	defer wrap(&err, "list secrets")
	// A range on the primary key rather than LIKE: no pattern characters
	// to escape. Paths never hold a byte above '~'.
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT `+secretColumns+` FROM secrets
		WHERE path >= ? AND path < ? ORDER BY path`), prefix, prefix+"\x7f")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		i, err := scanSecret(rows)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(i.Path, prefix) {
			out = append(out, i)
		}
	}
	return out, rows.Err()
}

// ListSecretVersions implements Secrets.
func (s *SQL) ListSecretVersions(ctx context.Context, path string) (out []SecretVersion, err error) {
	defer wrap(&err, "list versions of secret %s", path)
	if _, err := s.GetSecretInfo(ctx, path); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT path, version, created_by, created_at
		FROM secret_versions WHERE path = ? ORDER BY version DESC`), path)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v SecretVersion
		var at int64
		if err := rows.Scan(&v.Path, &v.Version, &v.CreatedBy, &at); err != nil {
			return nil, err
		}
		v.CreatedAt = fromMicros(at)
		out = append(out, v)
	}
	return out, rows.Err()
}

// DeleteSecret implements Secrets.
func (s *SQL) DeleteSecret(ctx context.Context, path, by string, at time.Time) (err error) {
	defer wrap(&err, "delete secret %s", path)
	n, err := affected(s.w.ExecContext(ctx, s.q(`UPDATE secrets SET deleted_at = ?, deleted_by = ?
		WHERE path = ? AND deleted_at IS NULL`), micros(at), by, path))
	if err != nil || n == 1 {
		return err
	}
	_, err = s.GetSecretInfo(ctx, path)
	return err
}

// PurgeSecrets implements Secrets.
func (s *SQL) PurgeSecrets(ctx context.Context, cutoff time.Time) (paths []string, err error) {
	defer wrap(&err, "purge deleted secrets")
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT path FROM secrets WHERE deleted_at IS NOT NULL AND deleted_at < ? ORDER BY path`), micros(cutoff))
		if err != nil {
			return err
		}
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return err
			}
			paths = append(paths, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, p := range paths {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM secret_versions WHERE path = ?`), p); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM secrets WHERE path = ?`), p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return paths, nil
}

// RewrapSecrets implements Secrets.
func (s *SQL) RewrapSecrets(ctx context.Context, rewrap func(v SecretVersion) ([]byte, error), meta map[string]string) (n int, err error) {
	defer wrap(&err, "rewrap secret data keys")
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		n = 0
		if s.pg {
			// Writers of new versions wait: none is wrapped with the old key
			// after this transaction read the table.
			if _, err := tx.ExecContext(ctx, `LOCK TABLE secret_versions IN SHARE ROW EXCLUSIVE MODE`); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT path, version, wrapped_key, created_by, created_at FROM secret_versions ORDER BY path, version`)
		if err != nil {
			return err
		}
		var vs []SecretVersion
		for rows.Next() {
			var v SecretVersion
			var at int64
			if err := rows.Scan(&v.Path, &v.Version, &v.WrappedKey, &v.CreatedBy, &at); err != nil {
				rows.Close()
				return err
			}
			v.CreatedAt = fromMicros(at)
			vs = append(vs, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, v := range vs {
			wrapped, err := rewrap(v)
			if err != nil {
				return fmt.Errorf("version %d of %s: %w", v.Version, v.Path, err)
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE secret_versions SET wrapped_key = ? WHERE path = ? AND version = ?`), wrapped, v.Path, v.Version); err != nil {
				return err
			}
			n++
		}
		for k, val := range meta {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO meta (name, value) VALUES (?, ?)
				ON CONFLICT (name) DO UPDATE SET value = excluded.value`), k, val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
