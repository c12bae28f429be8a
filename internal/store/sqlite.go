package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteReaders bounds the read pool. Readers run alongside the writer
// in WAL mode; more of them would only wait for CPU.
const sqliteReaders = 4

// OpenSQLite opens the SQLite database at path, creating it with mode 0600
// if it does not exist, and brings its schema up to date.
//
// SQLite has one writer: writes go through a single connection (so they
// queue in Go instead of failing with SQLITE_BUSY) and reads through a small
// pool of read-only connections.
func OpenSQLite(ctx context.Context, path string) (*SQL, error) {
	s, err := openSQLite(ctx, path)
	if err != nil {
		var e *sqlite.Error
		if errors.As(err, &e) && (e.Code()&0xff == sqlite3.SQLITE_NOTADB || e.Code()&0xff == sqlite3.SQLITE_CORRUPT) {
			return nil, fmt.Errorf("store %s is not a valid SQLite database: %w", path, err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

func openSQLite(ctx context.Context, path string) (_ *SQL, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	// SQLite would create the file with the umask's mode; it holds sealed
	// keys. Its -wal and -shm files get the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}

	// A file: URI, so that no character of the path is taken for a parameter.
	uri := "file:" + (&url.URL{Path: abs}).EscapedPath() + "?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)"
	// Write transactions take the write lock at BEGIN: another process
	// writing makes them wait (busy_timeout), not fail halfway through.
	w, err := sql.Open("sqlite", uri+"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	s := &SQL{w: w, r: w}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if err := w.PingContext(ctx); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}

	r, err := sql.Open("sqlite", uri+"&_pragma=query_only(1)")
	if err != nil {
		return nil, err
	}
	r.SetMaxOpenConns(sqliteReaders)
	s.r = r
	if err := r.PingContext(ctx); err != nil {
		return nil, err
	}
	return s, nil
}
