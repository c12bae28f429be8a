package testport_test

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/wardsec/ward/internal/testport"
)

// TestPortsAreDistinctAndBindable: ports handed out in one process never
// repeat, sit below the ephemeral range, and can be bound.
func TestPortsAreDistinctAndBindable(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		a := testport.Addr(t)
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
		_, p, _ := net.SplitHostPort(a)
		if n, _ := strconv.Atoi(p); n >= ephemeralLow(t) {
			t.Fatalf("%s is inside the ephemeral range", a)
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("bind %s: %v", a, err)
		}
		l.Close()
	}
}

// TestPortsAreDistinctAcrossProcesses: two processes asking at the same
// time get disjoint sets, because each holds its ports' locks.
func TestPortsAreDistinctAcrossProcesses(t *testing.T) {
	if os.Getenv("TESTPORT_CHILD") == "1" {
		for range 200 {
			os.Stdout.WriteString(testport.Addr(t) + "\n")
		}
		os.Stdout.WriteString("done\n")
		// Hold the ports until the parent has read both lists.
		_, _ = os.Stdin.Read(make([]byte, 1))
		return
	}
	type child struct {
		cmd   *exec.Cmd
		out   *bufio.Scanner
		stdin io.WriteCloser
	}
	var kids []child
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPortsAreDistinctAcrossProcesses$")
		cmd.Env = append(os.Environ(), "TESTPORT_CHILD=1")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		kids = append(kids, child{cmd, bufio.NewScanner(stdout), stdin})
	}
	// Both children hold their ports until told to end, after both lists
	// are read.
	seen := map[string]int{}
	for i, k := range kids {
		for k.out.Scan() && k.out.Text() != "done" {
			a := k.out.Text()
			if j, ok := seen[a]; ok {
				t.Errorf("%s handed out twice (processes %d and %d)", a, j, i)
			}
			seen[a] = i
		}
	}
	for _, k := range kids {
		k.stdin.Close()
		if err := k.cmd.Wait(); err != nil {
			t.Errorf("child: %v", err)
		}
	}
	if len(seen) != 400 {
		t.Fatalf("got %d distinct ports, want 400", len(seen))
	}
}

func ephemeralLow(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	n, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatal(err)
	}
	return n
}
