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
func OpenPostgres(ctx context.Context, dsn string) (_ *SQL, err error) {
	defer wrap(&err, "open postgres store") // not the DSN: it may hold a password
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(postgresConns)
	s := &SQL{w: db, r: db, pg: true}
	if err = db.PingContext(ctx); err == nil {
		err = s.migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}
