package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SQL is the Store on a database/sql database, SQLite or PostgreSQL. Open
// one with OpenSQLite or OpenPostgres.
//
// Times are stored as Unix microseconds (BIGINT), so they keep microsecond
// precision and come back in UTC.
type SQL struct {
	w  *sql.DB // writes, and every transaction that writes
	r  *sql.DB // reads: a separate pool on SQLite, w on PostgreSQL
	pg bool    // PostgreSQL: placeholders are $1..$n, BLOB is BYTEA
	// dsn is PostgreSQL's connection string, for LISTEN's own connection.
	dsn string
}

var _ Store = (*SQL)(nil)

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// q turns a query written with '?' placeholders into the dialect's.
func (s *SQL) q(query string) string {
	if s.pg {
		return rebind(query)
	}
	return query
}

// rebind numbers '?' placeholders as $1..$n. Ward's queries have no '?'
// inside string literals.
func rebind(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r != '?' {
			b.WriteRune(r)
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// inTx runs fn in a write transaction and commits if fn returns nil.
func (s *SQL) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// affected returns how many rows a statement changed.
func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// wrap adds context to *errp unless it is nil.
func wrap(errp *error, format string, args ...any) {
	if *errp != nil {
		*errp = fmt.Errorf(format+": %w", append(args, *errp)...)
	}
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// Close releases the database.
func (s *SQL) Close() error {
	if s.r == s.w {
		return s.w.Close()
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

// PutAuthority implements Store.
func (s *SQL) PutAuthority(ctx context.Context, a Authority) (err error) {
	defer wrap(&err, "put authority %s", a.ID)
	if a.Kind != KindRoot && a.Kind != KindIntermediate {
		return fmt.Errorf("unknown authority kind %q", a.Kind)
	}
	if err := checkState(a.State); err != nil {
		return err
	}
	n, err := affected(s.w.ExecContext(ctx, s.q(`INSERT INTO authorities
		(id, kind, cert_der, sealed_key, state, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`),
		a.ID, a.Kind, a.CertDER, a.SealedKey, a.State, micros(a.CreatedAt)))
	if err == nil && n == 0 {
		return ErrExists
	}
	return err
}

// SetAuthorityState implements Store.
func (s *SQL) SetAuthorityState(ctx context.Context, id, state string) (err error) {
	defer wrap(&err, "set state of authority %s", id)
	if err := checkState(state); err != nil {
		return err
	}
	n, err := affected(s.w.ExecContext(ctx, s.q(`UPDATE authorities SET state = ? WHERE id = ?`), state, id))
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return err
}

func checkState(state string) error {
	if state != AuthorityActive && state != AuthorityRetiring && state != AuthorityRetired {
		return fmt.Errorf("unknown authority state %q", state)
	}
	return nil
}

// ListAuthorities implements Store.
func (s *SQL) ListAuthorities(ctx context.Context) (as []Authority, err error) {
	defer wrap(&err, "list authorities")
	rows, err := s.r.QueryContext(ctx, `SELECT id, kind, cert_der, sealed_key, state, created_at
		FROM authorities ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var a Authority
		var created int64
		if err := rows.Scan(&a.ID, &a.Kind, &a.CertDER, &a.SealedKey, &a.State, &created); err != nil {
			return nil, err
		}
		a.CreatedAt = fromMicros(created)
		as = append(as, a)
	}
	return as, rows.Err()
}

// CreateToken implements Store.
func (s *SQL) CreateToken(ctx context.Context, t Token) (err error) {
	defer wrap(&err, "create join token for %s", t.SPIFFEID)
	n, err := affected(s.w.ExecContext(ctx, s.q(`INSERT INTO join_tokens
		(hash, spiffe_id, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`),
		t.Hash, t.SPIFFEID, t.CreatedBy, micros(t.CreatedAt), micros(t.ExpiresAt)))
	if err == nil && n == 0 {
		return ErrExists
	}
	return err
}

// GetToken implements Store.
func (s *SQL) GetToken(ctx context.Context, hash []byte, now time.Time) (t Token, err error) {
	defer wrap(&err, "get join token")
	return s.getToken(ctx, s.r, hash, now)
}

// getToken returns the token with the hash if it can still be used at now.
func (s *SQL) getToken(ctx context.Context, q querier, hash []byte, now time.Time) (Token, error) {
	t := Token{Hash: hash}
	var created, expires int64
	var used, voided sql.NullInt64
	err := q.QueryRowContext(ctx, s.q(`SELECT spiffe_id, created_by, created_at, expires_at, used_at, voided_at
		FROM join_tokens WHERE hash = ?`), hash).
		Scan(&t.SPIFFEID, &t.CreatedBy, &created, &expires, &used, &voided)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Token{}, ErrNotFound
	case err != nil:
		return Token{}, err
	case used.Valid:
		return Token{}, ErrTokenUsed
	case voided.Valid:
		return Token{}, ErrTokenVoided
	case micros(now) >= expires:
		return Token{}, ErrTokenExpired
	}
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	return t, nil
}

// Enroll implements Store. The token must be for the certificate's SPIFFE ID.
func (s *SQL) Enroll(ctx context.Context, tokenHash []byte, now time.Time, c Certificate) (err error) {
	defer wrap(&err, "enroll %s", c.Serial)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		// The conditional update is what makes a token single-use: of two
		// concurrent enrollments only one changes the row.
		n, err := affected(tx.ExecContext(ctx, s.q(`UPDATE join_tokens SET used_at = ?
			WHERE hash = ? AND spiffe_id = ? AND used_at IS NULL AND voided_at IS NULL AND expires_at > ?`),
			micros(now), tokenHash, c.SPIFFEID, micros(now)))
		if err != nil {
			return err
		}
		if n == 0 {
			t, err := s.getToken(ctx, tx, tokenHash, now)
			if err != nil {
				return err
			}
			return fmt.Errorf("join token is for %s, not %s", t.SPIFFEID, c.SPIFFEID)
		}
		return s.insertCert(ctx, tx, c)
	})
}

const certCols = `serial, spiffe_id, issuer_id, not_before, not_after, der, renewal, revoked_at, revocation_reason`

// InsertCertificate implements Store.
func (s *SQL) InsertCertificate(ctx context.Context, c Certificate) (err error) {
	defer wrap(&err, "insert certificate %s", c.Serial)
	return s.insertCert(ctx, s.w, c)
}

// Renew implements Store. It holds the revocation lock that RevokeSerial
// and RevokeID take first, so that it and a revocation never interleave.
func (s *SQL) Renew(ctx context.Context, previous string, c Certificate) (err error) {
	defer wrap(&err, "renew %s as %s", previous, c.Serial)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := lockRevocations(ctx, tx); err != nil {
			return err
		}
		prev, err := s.getCert(ctx, tx, previous)
		if err != nil {
			return err
		}
		if prev.Revoked() {
			return ErrRevoked
		}
		return s.insertCert(ctx, tx, c)
	})
}

func (s *SQL) insertCert(ctx context.Context, q querier, c Certificate) error {
	if c.Revoked() {
		// Revocations go through RevokeSerial and RevokeID, which keep the
		// revocation version.
		return errors.New("certificate is already revoked")
	}
	n, err := affected(q.ExecContext(ctx, s.q(`INSERT INTO certificates (`+certCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0) ON CONFLICT DO NOTHING`),
		c.Serial, c.SPIFFEID, c.IssuerID, micros(c.NotBefore), micros(c.NotAfter), c.DER, c.Renewal))
	if err == nil && n == 0 {
		err = ErrExists
	}
	return err
}

// GetCertificate implements Store.
func (s *SQL) GetCertificate(ctx context.Context, serial string) (c Certificate, err error) {
	defer wrap(&err, "get certificate %s", serial)
	return s.getCert(ctx, s.r, serial)
}

func (s *SQL) getCert(ctx context.Context, q querier, serial string) (Certificate, error) {
	c, err := scanCert(q.QueryRowContext(ctx, s.q(`SELECT `+certCols+` FROM certificates WHERE serial = ?`), serial))
	if errors.Is(err, sql.ErrNoRows) {
		return Certificate{}, ErrNotFound
	}
	return c, err
}

func scanCert(row interface{ Scan(...any) error }) (Certificate, error) {
	var c Certificate
	var notBefore, notAfter int64
	var revoked sql.NullInt64
	err := row.Scan(&c.Serial, &c.SPIFFEID, &c.IssuerID, &notBefore, &notAfter, &c.DER, &c.Renewal,
		&revoked, &c.RevocationReason)
	if err != nil {
		return Certificate{}, err
	}
	c.NotBefore, c.NotAfter = fromMicros(notBefore), fromMicros(notAfter)
	if revoked.Valid {
		c.RevokedAt = fromMicros(revoked.Int64)
	}
	return c, nil
}

// queryCerts runs a query that returns certCols.
func (s *SQL) queryCerts(ctx context.Context, q querier, query string, args ...any) ([]Certificate, error) {
	rows, err := q.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cs []Certificate
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

// ListCertificates implements Store.
func (s *SQL) ListCertificates(ctx context.Context, f CertFilter) (cs []Certificate, err error) {
	defer wrap(&err, "list certificates")
	query := `SELECT ` + certCols + ` FROM certificates`
	var where []string
	var args []any
	if f.SPIFFEID != "" {
		where, args = append(where, `spiffe_id = ?`), append(args, f.SPIFFEID)
	}
	if !f.ValidAt.IsZero() {
		where, args = append(where, `not_after > ?`), append(args, micros(f.ValidAt))
	}
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY not_before DESC, serial DESC`
	if f.Limit > 0 {
		query, args = query+` LIMIT ?`, append(args, f.Limit)
	}
	return s.queryCerts(ctx, s.r, query, args...)
}

// newestFirst orders certificates like ListCertificates.
func newestFirst(a, b Certificate) int {
	if c := b.NotBefore.Compare(a.NotBefore); c != 0 {
		return c
	}
	return strings.Compare(b.Serial, a.Serial)
}

// CountExpiring implements Store.
func (s *SQL) CountExpiring(ctx context.Context, from, to time.Time) (n int, err error) {
	defer wrap(&err, "count expiring certificates")
	err = s.r.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM certificates
		WHERE revoked_at IS NULL AND not_after > ? AND not_after <= ?`), micros(from), micros(to)).Scan(&n)
	return n, err
}

// RevokeSerial implements Store.
func (s *SQL) RevokeSerial(ctx context.Context, serial string, reason int, at time.Time) (c Certificate, err error) {
	defer wrap(&err, "revoke certificate %s", serial)
	err = s.revoke(ctx, func(tx *sql.Tx) (bool, error) {
		cs, err := s.queryCerts(ctx, tx, `UPDATE certificates SET revoked_at = ?, revocation_reason = ?
			WHERE serial = ? AND revoked_at IS NULL RETURNING `+certCols, micros(at), reason, serial)
		if err != nil {
			return false, err
		}
		if len(cs) == 0 { // unknown or already revoked
			c, err = s.getCert(ctx, tx, serial)
			return false, err
		}
		c = cs[0]
		return true, s.voidTokens(ctx, tx, c.SPIFFEID, at)
	})
	if err != nil {
		return Certificate{}, err
	}
	return c, nil
}

// RevokeID implements Store. It voids the ID's unused tokens even when it
// finds no certificate to revoke.
func (s *SQL) RevokeID(ctx context.Context, spiffeID string, reason int, at time.Time) (cs []Certificate, err error) {
	defer wrap(&err, "revoke %s", spiffeID)
	err = s.revoke(ctx, func(tx *sql.Tx) (bool, error) {
		// Tokens first: an enrollment racing this revocation either finds
		// its token voided or commits before this statement, and then its
		// certificate is visible to the update below and revoked.
		if err := s.voidTokens(ctx, tx, spiffeID, at); err != nil {
			return false, err
		}
		var err error
		cs, err = s.queryCerts(ctx, tx, `UPDATE certificates SET revoked_at = ?, revocation_reason = ?
			WHERE spiffe_id = ? AND revoked_at IS NULL AND not_after > ? RETURNING `+certCols,
			micros(at), reason, spiffeID, micros(at))
		return len(cs) > 0, err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(cs, newestFirst)
	return cs, nil
}

// revoke runs fn in a transaction that holds the revocation version's row
// lock from the start, so revocations never deadlock each other on
// PostgreSQL, and bumps the version if fn revoked something.
func (s *SQL) revoke(ctx context.Context, fn func(tx *sql.Tx) (revoked bool, err error)) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := lockRevocations(ctx, tx); err != nil {
			return err
		}
		revoked, err := fn(tx)
		if err != nil || !revoked {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE revocation_version SET version = version + 1`)
		return err
	})
}

// lockRevocations takes the revocation version's row lock (on SQLite, the
// write lock) until tx ends. Revocations and renewals take it first, so each
// statement after it sees what the other committed.
func lockRevocations(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE revocation_version SET version = version`)
	return err
}

// voidTokens voids the unused tokens of an ID so that a revoked identity
// cannot enroll again with a token made before its revocation.
func (s *SQL) voidTokens(ctx context.Context, tx *sql.Tx, spiffeID string, at time.Time) error {
	_, err := tx.ExecContext(ctx, s.q(`UPDATE join_tokens SET voided_at = ?
		WHERE spiffe_id = ? AND used_at IS NULL AND voided_at IS NULL`), micros(at), spiffeID)
	return err
}

// Revocations implements Store.
func (s *SQL) Revocations(ctx context.Context, now time.Time) (l RevocationList, err error) {
	defer wrap(&err, "list revocations")
	// One snapshot, so that the version matches the entries.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return RevocationList{}, err
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to commit
	if err := tx.QueryRowContext(ctx, `SELECT version FROM revocation_version`).Scan(&l.Version); err != nil {
		return RevocationList{}, err
	}
	l.Entries, err = s.queryCerts(ctx, tx, `SELECT `+certCols+` FROM certificates
		WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY revoked_at, serial`, micros(now))
	return l, err
}

// RevocationVersion implements Store.
func (s *SQL) RevocationVersion(ctx context.Context) (v int64, err error) {
	defer wrap(&err, "get revocation version")
	err = s.r.QueryRowContext(ctx, `SELECT version FROM revocation_version`).Scan(&v)
	return v, err
}

// GetMeta implements Store.
func (s *SQL) GetMeta(ctx context.Context, key string) (v string, err error) {
	defer wrap(&err, "get setting %s", key)
	err = s.r.QueryRowContext(ctx, s.q(`SELECT value FROM meta WHERE name = ?`), key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return v, err
}

// SetMeta implements Store.
func (s *SQL) SetMeta(ctx context.Context, key, value string) (err error) {
	defer wrap(&err, "set setting %s", key)
	_, err = s.w.ExecContext(ctx, s.q(`INSERT INTO meta (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`), key, value)
	return err
}

// BumpRevocationVersion implements Store.
func (s *SQL) BumpRevocationVersion(ctx context.Context) (v int64, err error) {
	defer wrap(&err, "bump revocation version")
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE revocation_version SET version = version + 1`); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT version FROM revocation_version`).Scan(&v)
	})
	return v, err
}
