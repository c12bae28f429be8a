// Package pgtest gives tests a real PostgreSQL database of their own.
//
// Start uses the server in $WARD_TEST_PG_DSN when it is set. Otherwise it
// starts a throwaway server once per test binary, from the PostgreSQL
// binaries in PATH or under /usr/lib/postgresql/*/bin, in a temporary
// directory and listening on 127.0.0.1 only. Either way each test gets a
// fresh database, dropped when the test ends. A package whose tests call
// Start uses Main as its TestMain, which stops the server:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"go.uber.org/goleak"

	"github.com/wardsec/ward/internal/testport"
)

// EnvDSN names the environment variable with the DSN of a server to use
// instead of a throwaway one. Its user must be allowed to create databases.
const EnvDSN = "WARD_TEST_PG_DSN"

var (
	once   sync.Once
	srv    *server
	srvErr error
)

// server is the PostgreSQL server that tests share.
type server struct {
	dsn   string  // connects to the server's maintenance database
	admin *sql.DB // creates and drops the tests' databases
	// For a throwaway server only:
	dir  string
	proc *os.Process
	done chan struct{} // closed when the server has exited
}

// Start returns the DSN of a new, empty database that is dropped when t
// ends. It fails t if there is no server to be had; it never skips.
func Start(t testing.TB) string {
	t.Helper()
	once.Do(func() { srv, srvErr = start() })
	if srvErr != nil {
		t.Fatalf("pgtest: %v", srvErr)
	}
	name := "ward_test_" + strings.ToLower(rand.Text())
	if _, err := srv.admin.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := srv.admin.ExecContext(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	dsn, err := withDatabase(srv.dsn, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// Main runs the tests, stops the server and exits. Like goleak.VerifyTestMain,
// it fails tests that passed but leaked goroutines.
func Main(m *testing.M) { goleak.VerifyTestMain(runner{m}) }

type runner struct{ m *testing.M }

func (r runner) Run() int {
	defer Stop()
	return r.m.Run()
}

// Stop stops the throwaway server and removes its files. Start fails after
// Stop. Main calls it; without Main, the server is killed when the test
// binary exits but its temporary directory stays.
func Stop() {
	once.Do(func() {})
	s := srv
	srv, srvErr = nil, errors.New("server stopped")
	if s == nil {
		return
	}
	s.admin.Close()
	if s.proc != nil {
		_ = s.proc.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.proc.Kill()
			<-s.done
		}
		os.RemoveAll(s.dir)
	}
}

func start() (*server, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		s := &server{dsn: dsn}
		var err error
		if s.admin, err = connect(dsn); err != nil {
			return nil, fmt.Errorf("$%s: %w", EnvDSN, err)
		}
		return s, nil
	}
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ward-pgtest-")
	if err != nil {
		return nil, err
	}
	s, err := startServer(bin, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// debianBinaries is where Debian keeps the server binaries, out of PATH,
// one directory per major version.
var debianBinaries = "/usr/lib/postgresql/*/bin"

// findBinaries returns the directory with initdb and postgres.
func findBinaries() (string, error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	found, _ := filepath.Glob(debianBinaries)
	slices.SortFunc(found, func(a, b string) int { return majorVersion(b) - majorVersion(a) })
	for _, dir := range append(dirs, found...) {
		if isFile(filepath.Join(dir, "initdb")) && isFile(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries not found: install postgresql (the test command does this)")
}

func majorVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// startServer runs initdb in dir and then the server, as an unprivileged
// user when running as root since PostgreSQL refuses to run as root.
func startServer(bin, dir string) (*server, error) {
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres or nobody user to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			return nil, err
		}
	}

	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = sysProcAttr(cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", dir,
		// Durability is not what these tests are about.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=500")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr(cred)
	s := &server{
		dsn:  fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port),
		dir:  dir,
		done: make(chan struct{}),
	}
	started := make(chan error)
	go func() {
		// On Linux the parent-death signal fires when the thread that
		// started the server exits: keep this one while the server runs.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s.proc = cmd.Process

	if err := s.waitReady(); err != nil {
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("postgres did not start: %w\n%s", err, log)
	}
	return s, nil
}

// waitReady connects to the server once it accepts connections.
func (s *server) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if s.admin, err = connect(s.dsn); err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("server exited: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.proc.Kill()
			<-s.done
			return err
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) { return testport.Port() }

func connect(dsn string) (*sql.DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// withDatabase returns dsn, a URL or key=value connection string, naming
// database name instead.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse $%s: %w", EnvDSN, err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil // the last setting wins
}
