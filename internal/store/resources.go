package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

var _ Resources = (*SQL)(nil)

// PutResourceVersion implements Resources. The version is the primary
// key: of two servers recording base+1 at once, the second inserts nothing
// and gets ErrConflict.
func (s *SQL) PutResourceVersion(ctx context.Context, base int64, v ResourceVersion) (version int64, err error) {
	defer wrap(&err, "record resource version %d", base+1)
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var latest int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM resource_versions`).Scan(&latest); err != nil {
			return err
		}
		if latest != base {
			return fmt.Errorf("%w: the newest version is %d, not %d", ErrConflict, latest, base)
		}
		docs := v.Documents
		if docs == nil {
			docs = []byte{} // an empty set; nil would be SQL NULL
		}
		n, err := affected(tx.ExecContext(ctx, s.q(`INSERT INTO resource_versions
			(version, created_at, author, action, changes, diff, documents) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`),
			base+1, micros(v.CreatedAt), v.Author, v.Action, strings.Join(v.Changes, "\n"), v.Diff, docs))
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: version %d was recorded by another change", ErrConflict, base+1)
		}
		if s.pg {
			if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, ChannelResources, fmt.Sprint(base+1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return base + 1, nil
}

func splitLines(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}

func (s *SQL) getVersion(ctx context.Context, query string, args ...any) (ResourceVersion, error) {
	var v ResourceVersion
	var at int64
	var changes string
	err := s.r.QueryRowContext(ctx, s.q(query), args...).Scan(&v.Version, &at, &v.Author, &v.Action, &changes, &v.Diff, &v.Documents)
	if errors.Is(err, sql.ErrNoRows) {
		return v, ErrNotFound
	}
	v.CreatedAt, v.Changes = fromMicros(at), splitLines(changes)
	return v, err
}

const versionColumns = `version, created_at, author, action, changes, diff, documents`

// GetResourceVersion implements Resources.
func (s *SQL) GetResourceVersion(ctx context.Context, version int64) (v ResourceVersion, err error) {
	defer wrap(&err, "get resource version %d", version)
	return s.getVersion(ctx, `SELECT `+versionColumns+` FROM resource_versions WHERE version = ?`, version)
}

// LatestResourceVersion implements Resources.
func (s *SQL) LatestResourceVersion(ctx context.Context) (v ResourceVersion, err error) {
	defer wrap(&err, "get latest resource version")
	return s.getVersion(ctx, `SELECT `+versionColumns+` FROM resource_versions ORDER BY version DESC LIMIT 1`)
}

// ResourcesVersion implements Resources.
func (s *SQL) ResourcesVersion(ctx context.Context) (v int64, err error) {
	defer wrap(&err, "get resources version")
	err = s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM resource_versions`).Scan(&v)
	return v, err
}

// ListResourceVersions implements Resources.
func (s *SQL) ListResourceVersions(ctx context.Context, before int64, limit int) (vs []ResourceVersion, err error) {
	defer wrap(&err, "list resource versions")
	if limit <= 0 {
		limit = 100
	}
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT version, created_at, author, action, changes FROM resource_versions
		WHERE version < ? ORDER BY version DESC LIMIT ?`), before, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v ResourceVersion
		var at int64
		var changes string
		if err := rows.Scan(&v.Version, &at, &v.Author, &v.Action, &changes); err != nil {
			return nil, err
		}
		v.CreatedAt, v.Changes = fromMicros(at), splitLines(changes)
		vs = append(vs, v)
	}
	return vs, rows.Err()
}

// PutOperator implements Resources.
func (s *SQL) PutOperator(ctx context.Context, o Operator) (err error) {
	defer wrap(&err, "put operator %s", o.Name)
	_, err = s.w.ExecContext(ctx, s.q(`INSERT INTO operators (name, role, services, created_by, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET role = excluded.role, services = excluded.services,
			created_by = excluded.created_by, created_at = excluded.created_at`),
		o.Name, o.Role, strings.Join(o.Services, ","), o.CreatedBy, micros(o.CreatedAt))
	return err
}

func scanOperator(row interface{ Scan(...any) error }) (Operator, error) {
	var o Operator
	var services string
	var at int64
	if err := row.Scan(&o.Name, &o.Role, &services, &o.CreatedBy, &at); err != nil {
		return o, err
	}
	o.CreatedAt = fromMicros(at)
	o.Services = []string{}
	if services != "" {
		o.Services = strings.Split(services, ",")
	}
	return o, nil
}

// GetOperator implements Resources.
func (s *SQL) GetOperator(ctx context.Context, name string) (o Operator, err error) {
	defer wrap(&err, "get operator %s", name)
	o, err = scanOperator(s.r.QueryRowContext(ctx, s.q(`SELECT name, role, services, created_by, created_at FROM operators WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return o, ErrNotFound
	}
	return o, err
}

// ListOperators implements Resources.
func (s *SQL) ListOperators(ctx context.Context) (ops []Operator, err error) {
	defer wrap(&err, "list operators")
	rows, err := s.r.QueryContext(ctx, `SELECT name, role, services, created_by, created_at FROM operators ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		o, err := scanOperator(rows)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o)
	}
	// By byte order on every database: PostgreSQL's ORDER BY follows the
	// cluster's collation, which may ignore '-'.
	slices.SortFunc(ops, func(a, b Operator) int { return strings.Compare(a.Name, b.Name) })
	return ops, rows.Err()
}
