// Package redistest runs a real redis-server for tests.
//
// A test binary gets at most one server, started on first use on a free
// port of 127.0.0.1 with persistence off, in a temporary directory, and
// stopped when the binary's tests end. Wire it up in TestMain:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Wrap(m)) }
//
// and call Addr in each test that needs Redis. If WARD_TEST_REDIS_ADDR is
// set, that server is used instead and nothing is started. A missing
// redis-server fails the test; it never skips, so a CI machine without it
// cannot pass silently.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/testport"
)

// EnvAddr names the environment variable holding the address of an
// existing Redis to use instead of starting one.
const EnvAddr = "WARD_TEST_REDIS_ADDR"

// ErrNotFound is reported when redis-server is not on PATH.
var ErrNotFound = errors.New("redis-server not found: install redis-server (the test command does this)")

var (
	mu      sync.Mutex
	started bool
	addr    string
	srvErr  error
	srv     *server
)

// TestingM is what Wrap wraps and returns; *testing.M implements it, and
// goleak.VerifyTestMain accepts it.
type TestingM interface{ Run() int }

type wrapped struct{ m TestingM }

// Wrap returns m with Run changed to stop the binary's redis-server, if
// one was started, after the tests.
func Wrap(m TestingM) TestingM { return wrapped{m} }

func (w wrapped) Run() int {
	code := w.m.Run()
	mu.Lock()
	defer mu.Unlock()
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "redistest: stopping redis-server: %v\n", err)
		}
		srv = nil
	}
	return code
}

// Addr returns the address of the binary's Redis, starting it on first use.
// It fails tb if Redis is unavailable.
func Addr(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !started {
		started = true
		if a := os.Getenv(EnvAddr); a != "" {
			addr = a
			srvErr = waitReady(a, 5*time.Second)
		} else {
			srv, srvErr = start()
			if srvErr == nil {
				addr = srv.addr
			}
		}
	}
	if srvErr != nil {
		tb.Fatalf("redistest: %v", srvErr)
	}
	return addr
}

type server struct {
	cmd  *exec.Cmd
	dir  string
	addr string
	done chan error
}

func start() (*server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotFound
	}
	var last error
	// The port is free when picked but could be taken before redis-server
	// binds it; try a few.
	for range 3 {
		s, err := startOnce(bin)
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func startOnce(bin string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ward-redistest-")
	if err != nil {
		return nil, err
	}
	s := &server{dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan error, 1)}
	var out strings.Builder
	s.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--loglevel", "warning")
	s.cmd.Dir = dir
	s.cmd.Stdout = &out
	s.cmd.Stderr = &out
	setDeathSignal(s.cmd)
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	if err := waitReady(s.addr, 10*time.Second); err != nil {
		_ = s.stop()
		return nil, fmt.Errorf("redis-server on %s did not start: %w; output: %s", s.addr, err, out.String())
	}
	return s, nil
}

func (s *server) stop() error {
	defer os.RemoveAll(s.dir)
	select {
	case <-s.done: // already exited
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
		return nil
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return errors.New("redis-server did not exit on SIGINT; killed")
	}
}

func freePort() (int, error) { return testport.Port() }

// waitReady polls addr with PING until it answers PONG.
func waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Server is a redis-server of one test's own, for a test that stops it to
// see what Ward does when Redis goes away.
type Server struct {
	s    *server
	once sync.Once
}

// Start runs a redis-server for tb alone on a free port of 127.0.0.1,
// stopped when tb ends if Stop was not called first. It fails tb if
// redis-server cannot start.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := start()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	srv := &Server{s: s}
	tb.Cleanup(srv.Stop)
	return srv
}

// Addr is the server's address.
func (s *Server) Addr() string { return s.s.addr }

// Stop stops the server and waits until it has exited; later calls do
// nothing.
func (s *Server) Stop() {
	s.once.Do(func() {
		if err := s.s.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "redistest: stopping redis-server: %v\n", err)
		}
	})
}
