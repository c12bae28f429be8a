package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ChannelInstances is the notification channel of instance set changes
// (PostgreSQL): its payload is the new instances version.
const ChannelInstances = "ward_instances"

// Instance is one registered instance of a service: the inbound address of
// one of its sidecars.
type Instance struct {
	ID       string
	Service  string
	Address  string // host:port
	SPIFFEID string // of the SVID that registered it
	Serial   string // that SVID's serial (hex)
	Labels   map[string]string
	Started  time.Time // when the sidecar started
	Renewed  time.Time // the last registration or renewal
	Expires  time.Time // Renewed + TTL
}

// Instances is the live set of registered instances. Every change to the
// set (a new address, a removal) raises InstancesVersion in the same
// transaction and, where the store has notifications, notifies
// ChannelInstances; renewals change no version.
type Instances interface {
	// PutInstance registers in: a new ID is added; an existing ID, or an
	// instance of the same service and address registered by the same
	// SPIFFE ID, is replaced. It returns the version after the change.
	PutInstance(ctx context.Context, in Instance) (int64, error)
	// RenewInstances sets Renewed and Expires of the instances ids (a
	// server batches its renewals); unknown ids are ignored. It returns
	// the ids it did not find.
	RenewInstances(ctx context.Context, ids []string, renewed, expires time.Time) (missing []string, err error)
	// DeleteInstance removes one instance; ErrNotFound if unknown.
	DeleteInstance(ctx context.Context, id string) (Instance, error)
	// ExpireInstances removes the instances whose Expires is before now
	// and returns them.
	ExpireInstances(ctx context.Context, now time.Time) ([]Instance, error)
	// DeleteInstancesBySerial removes the instances registered or last
	// renewed with one of serials (a revocation) and returns them.
	DeleteInstancesBySerial(ctx context.Context, serials []string) ([]Instance, error)
	// ListInstances returns the live instances, of one service unless
	// service is empty, ordered by service then address.
	ListInstances(ctx context.Context, service string) ([]Instance, error)
	// InstancesVersion is the number of changes made to the set so far.
	InstancesVersion(ctx context.Context) (int64, error)
}

// feedInstances is the row of feed_versions that counts instance set
// changes.
const feedInstances = "instances"

const instanceColumns = `id, service, address, spiffe_id, serial, labels, started_at, renewed_at, expires_at`

// changeInstances runs fn in a transaction that raises the instances
// version, notifies it (PostgreSQL) and returns it; fn returning
// errUnchanged rolls it all back and returns the version unchanged.
func (s *SQL) changeInstances(ctx context.Context, fn func(tx *sql.Tx) error) (v int64, err error) {
	unchanged := false
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := affected(tx.ExecContext(ctx, s.q(`UPDATE feed_versions SET version = version + 1 WHERE name = ?`), feedInstances))
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("no version row for feed %s", feedInstances)
		}
		if err := fn(tx); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, s.q(`SELECT version FROM feed_versions WHERE name = ?`), feedInstances).Scan(&v); err != nil {
			return err
		}
		if s.pg {
			if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, ChannelInstances, fmt.Sprint(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		unchanged = true
		err = nil
	}
	if err != nil {
		return 0, err
	}
	if unchanged {
		return s.InstancesVersion(ctx)
	}
	return v, nil
}

// PutInstance implements Instances.
func (s *SQL) PutInstance(ctx context.Context, in Instance) (v int64, err error) {
	defer wrap(&err, "register instance %s", in.ID)
	if in.ID == "" || in.Service == "" || in.Address == "" || in.SPIFFEID == "" {
		return 0, errors.New("an instance needs an id, a service, an address and a SPIFFE ID")
	}
	labels, err := json.Marshal(in.Labels)
	if err != nil {
		return 0, err
	}
	return s.changeInstances(ctx, func(tx *sql.Tx) error {
		// The same sidecar registering again (a restart, a lost renewal)
		// replaces its old entry instead of adding a second one.
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM instances WHERE id = ? OR (service = ? AND address = ? AND spiffe_id = ?)`),
			in.ID, in.Service, in.Address, in.SPIFFEID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO instances (`+instanceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			in.ID, in.Service, in.Address, in.SPIFFEID, in.Serial, string(labels), micros(in.Started), micros(in.Renewed), micros(in.Expires))
		return err
	})
}

// RenewInstances implements Instances.
func (s *SQL) RenewInstances(ctx context.Context, ids []string, renewed, expires time.Time) (missing []string, err error) {
	defer wrap(&err, "renew %d instances", len(ids))
	if len(ids) == 0 {
		return nil, nil
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, s.q(`UPDATE instances SET renewed_at = ?, expires_at = ? WHERE id = ?`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids {
			n, err := affected(stmt.ExecContext(ctx, micros(renewed), micros(expires), id))
			if err != nil {
				return err
			}
			if n == 0 {
				missing = append(missing, id)
			}
		}
		return nil
	})
	return missing, err
}

// DeleteInstance implements Instances.
func (s *SQL) DeleteInstance(ctx context.Context, id string) (in Instance, err error) {
	defer wrap(&err, "deregister instance %s", id)
	_, err = s.changeInstances(ctx, func(tx *sql.Tx) error {
		got, err := s.scanInstances(tx.QueryContext(ctx, s.q(`SELECT `+instanceColumns+` FROM instances WHERE id = ?`), id))
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return ErrNotFound
		}
		in = got[0]
		_, err = tx.ExecContext(ctx, s.q(`DELETE FROM instances WHERE id = ?`), id)
		return err
	})
	return in, err
}

// ExpireInstances implements Instances.
func (s *SQL) ExpireInstances(ctx context.Context, now time.Time) (gone []Instance, err error) {
	defer wrap(&err, "expire instances")
	return s.deleteInstancesWhere(ctx, `expires_at < ?`, micros(now))
}

// DeleteInstancesBySerial implements Instances.
func (s *SQL) DeleteInstancesBySerial(ctx context.Context, serials []string) (gone []Instance, err error) {
	defer wrap(&err, "remove the instances of %d certificates", len(serials))
	if len(serials) == 0 {
		return nil, nil
	}
	marks := strings.Repeat("?, ", len(serials))
	args := make([]any, len(serials))
	for i, sn := range serials {
		args[i] = sn
	}
	return s.deleteInstancesWhere(ctx, `serial IN (`+marks[:len(marks)-2]+`)`, args...)
}

func (s *SQL) deleteInstancesWhere(ctx context.Context, where string, args ...any) (gone []Instance, err error) {
	_, err = s.changeInstances(ctx, func(tx *sql.Tx) error {
		got, err := s.scanInstances(tx.QueryContext(ctx, s.q(`SELECT `+instanceColumns+` FROM instances WHERE `+where), args...))
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return errUnchanged
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM instances WHERE `+where), args...); err != nil {
			return err
		}
		gone = got
		return nil
	})
	return gone, err
}

// ListInstances implements Instances.
func (s *SQL) ListInstances(ctx context.Context, service string) (_ []Instance, err error) {
	defer wrap(&err, "list instances")
	if service == "" {
		return s.scanInstances(s.r.QueryContext(ctx, `SELECT `+instanceColumns+` FROM instances ORDER BY service, address, id`))
	}
	return s.scanInstances(s.r.QueryContext(ctx, s.q(`SELECT `+instanceColumns+` FROM instances WHERE service = ? ORDER BY address, id`), service))
}

// InstancesVersion implements Instances.
func (s *SQL) InstancesVersion(ctx context.Context) (v int64, err error) {
	defer wrap(&err, "get instances version")
	err = s.r.QueryRowContext(ctx, s.q(`SELECT version FROM feed_versions WHERE name = ?`), feedInstances).Scan(&v)
	return v, err
}

func (s *SQL) scanInstances(rows *sql.Rows, err error) ([]Instance, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var in Instance
		var labels string
		var started, renewed, expires int64
		if err := rows.Scan(&in.ID, &in.Service, &in.Address, &in.SPIFFEID, &in.Serial, &labels, &started, &renewed, &expires); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(labels), &in.Labels); err != nil {
			return nil, fmt.Errorf("instance %s: labels: %w", in.ID, err)
		}
		in.Started, in.Renewed, in.Expires = fromMicros(started), fromMicros(renewed), fromMicros(expires)
		out = append(out, in)
	}
	return out, rows.Err()
}
