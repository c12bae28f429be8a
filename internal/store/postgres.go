package store

import (
	"context"
	"database/sql"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// postgresConns bounds the connections one server opens, so that several
// servers stay well under PostgreSQL's max_connections (100 by default).
const postgresConns = 16

// OpenPostgres connects to the PostgreSQL database named by dsn (a URL or
// key=value connection string) and brings its schema up to date. Servers
// sharing the database may start at the same time.
// Wrap it with Notifying to listen for other servers' changes.
func OpenPostgres(ctx context.Context, dsn string) (_ *SQL, err error) {
	defer wrap(&err, "open postgres store") // not the DSN: it may hold a password
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(postgresConns)
	s := &SQL{w: db, r: db, pg: true, dsn: dsn}
	if err = db.PingContext(ctx); err == nil {
		err = s.migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// PostgresStore is the Store on PostgreSQL with notifications (LISTEN).
type PostgresStore struct{ pgNotifier }

var _ Notifier = (*PostgresStore)(nil)

// Notifying gives a PostgreSQL store the Notifier capability.
func Notifying(s *SQL) *PostgresStore { return &PostgresStore{pgNotifier{s}} }
