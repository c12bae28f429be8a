package audit

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	envCrashDir    = "WARD_AUDIT_TEST_CRASH_DIR"
	envCrashAlways = "WARD_AUDIT_TEST_CRASH_SYNC_ALWAYS" // the helper appends with SyncAlways
)

// crashHelper runs in a child process: it appends from several goroutines
// as fast as it can and prints every acknowledged seq, until it is killed.
func crashHelper() {
	dir := os.Getenv(envCrashDir)
	keyPEM, err := os.ReadFile(filepath.Join(dir, "..", "key.pem"))
	if err != nil {
		println(err.Error())
		os.Exit(2)
	}
	b, _ := pem.Decode(keyPEM)
	key, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		println(err.Error())
		os.Exit(2)
	}
	var interval time.Duration // the default: written before Append returns, fsynced within 1s
	if os.Getenv(envCrashAlways) != "" {
		interval = SyncAlways
	}
	w, err := Open(dir, Options{Signer: key, MaxSegmentBytes: 1 << 20, CheckpointEvery: 50, Retention: -1, SyncInterval: interval})
	if err != nil {
		println("open:", err.Error())
		os.Exit(3)
	}
	var mu sync.Mutex
	for g := range 8 {
		go func() {
			for i := 0; ; i++ {
				e := testEvent(g*1000000 + i)
				if g == 0 {
					// Large records make large writes, which a kill can
					// interrupt part way: torn tails.
					e.Fields = map[string]string{"blob": strings.Repeat("x", 64<<10)}
				}
				seq, err := w.Append(context.Background(), e)
				if err != nil {
					println("append:", err.Error())
					os.Exit(4)
				}
				mu.Lock()
				os.Stdout.WriteString(strconv.FormatUint(seq, 10) + "\n")
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrashLoop kills a process appending under load with SIGKILL at
// random moments, at least 50 times, restarting it each time (appending
// with the default sync interval and with SyncAlways in turn); then the
// log must verify and hold every seq the process acknowledged.
func TestCrashLoop(t *testing.T) {
	// 60 kills, or at least 50 when the machine is slow.
	kills, minKills := 60, 50
	if testing.Short() {
		kills, minKills = 10, 10
	}
	base := t.TempDir()
	dir := filepath.Join(base, "log")
	key := newKey(t)
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]bool{}
	var tornTails int
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	start := time.Now()
	done := 0
	for i := 0; i < kills; i++ {
		if el := time.Since(start); i >= minKills && el > 40*time.Second {
			break
		} else if el > 150*time.Second {
			t.Fatalf("only %d kills in %v", i, el)
		}
		done++
		n, err := runAndKill(t, dir, rng, acked, i%2 == 1)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		r := mustVerify(t, dir, key)
		if r.Tampered() {
			t.Fatalf("after kill %d: %v", i+1, r.Problems)
		}
		if r.TornTail != nil {
			tornTails++
		}
		for s := range acked {
			if s > r.LastSeq {
				t.Fatalf("after kill %d: seq %d was acknowledged but the log ends at %d", i+1, s, r.LastSeq)
			}
		}
		t.Logf("kill %d: %d acks this run, log at seq %d", i+1, n, r.LastSeq)
	}
	// A last open recovers the torn tail of the last kill.
	w, err := Open(dir, Options{Signer: key, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustVerify(t, dir, key)
	if !r.OK() || r.FirstSeq != 1 || r.Records != r.LastSeq {
		t.Fatalf("final verify: %s %v torn=%v", r.Summary(), r.Problems, r.TornTail)
	}
	present := map[uint64]bool{}
	if _, err := Query(context.Background(), dir, Filter{}, func(rec Record) error { present[rec.Seq] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	for s := range acked {
		if !present[s] {
			t.Fatalf("acknowledged seq %d lost", s)
		}
	}
	if len(acked) < 500 {
		t.Fatalf("only %d acknowledged records: not under load", len(acked))
	}
	t.Logf("%d kills in %v, %d torn tails seen, %d acknowledged records all present, log of %d records in %d segments",
		done, time.Since(start).Round(time.Second), tornTails, len(acked), r.Records, r.Segments)
}

// runAndKill starts the helper, lets it append for a random while after
// its first acknowledgement, kills it with SIGKILL and collects the seqs
// it printed.
func runAndKill(t *testing.T, dir string, rng *rand.Rand, acked map[uint64]bool, always bool) (int, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir)
	if always {
		cmd.Env = append(cmd.Env, envCrashAlways+"=1")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	first := make(chan struct{})
	seqs := make(chan uint64, 1<<16)
	go func() {
		defer close(seqs)
		sc := bufio.NewScanner(out)
		once := sync.OnceFunc(func() { close(first) })
		for sc.Scan() {
			s, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				continue // a line cut by the kill
			}
			once()
			seqs <- s
		}
		once()
	}()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
	}
	time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		return 0, err
	}
	n := 0
	for s := range seqs {
		acked[s] = true
		n++
	}
	_ = cmd.Wait()
	if n == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	return n, nil
}
