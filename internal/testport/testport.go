// Package testport hands tests loopback ports that nothing else takes
// between the moment a test picks one and the moment a server binds it.
//
// Reserving a port by listening on 127.0.0.1:0 and closing the listener
// is a race: the port comes from the kernel's ephemeral range, and the
// kernel hands it out again to the next outgoing connection or :0
// listener on the machine. In a full test run, where packages run in
// parallel, that race failed CI with "bind: address already in use".
//
// testport picks ports below the ephemeral range, which the kernel never
// hands out on its own, and holds an exclusive flock(2) on a file per
// port for the rest of the process, so test processes running side by
// side never pick the same one. No library does this for a process tree
// of `go test` binaries, which is why it is written here.
//
// It is for tests only: nothing in the ward binary imports it.
package testport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// span is how many ports below the ephemeral range are used.
const span = 10000

var (
	mu   sync.Mutex
	held []*os.File // one locked file per port handed out; kept open until exit
)

// Addr returns "127.0.0.1:PORT" for a port no other test process holds
// and nothing listens on, or fails t.
func Addr(t testing.TB) string {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// Port returns a free loopback port reserved for this process.
func Port() (int, error) {
	lo, hi := window()
	dir := filepath.Join(os.TempDir(), "ward-testport")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, fmt.Errorf("testport: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	n := hi - lo
	start := rand.IntN(n)
	for i := range n {
		p := lo + (start+i)%n
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return 0, fmt.Errorf("testport: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // another test process holds it
			continue
		}
		if !free(p) {
			f.Close() // something outside the tests listens there
			continue
		}
		held = append(held, f)
		return p, nil
	}
	return 0, errors.New("testport: no free port left below the ephemeral range")
}

// free reports whether both TCP and UDP can bind p on loopback now.
func free(p int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// window is [lo, hi): the span ports just below the kernel's ephemeral
// range (net.ipv4.ip_local_port_range), or below 32768 when it cannot be
// read.
func window() (lo, hi int) {
	hi = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 1024+1000 {
				hi = v
			}
		}
	}
	lo = max(hi-span, 1024)
	return lo, hi
}
