package audit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(envCrashDir) != "" {
		crashHelper()
		return
	}
	if os.Getenv(envFsizeDir) != "" {
		fsizeHelper()
		return
	}
	goleak.VerifyTestMain(m)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testEvent(i int) Event {
	return Event{
		Time: t0.Add(time.Duration(i) * time.Second), Type: "gateway.request",
		Actor: fmt.Sprintf("spiffe://example.org/svc/caller-%d", i%5), Subject: "spiffe://example.org/svc/orders",
		Decision: []string{"allow", "deny"}[i%2], Reason: []string{"", "no_rule"}[i%2],
		Source: "192.0.2.7:40000", Service: fmt.Sprintf("svc-%d", i%3), User: fmt.Sprintf("user-%d", i%7),
		RequestID: fmt.Sprintf("req-%d", i), Fields: map[string]string{"path": "/orders/1"},
	}
}

// smallLog writes n records into a log with small segments (uncompressed
// unless compress) and returns its directory.
func smallLog(t *testing.T, key *ecdsa.PrivateKey, n int, compress bool) string {
	t.Helper()
	dir := t.TempDir()
	w, err := Open(dir, Options{Signer: key, MaxSegmentBytes: 4096, CheckpointEvery: 7, NoCompress: !compress, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		seq, err := w.Append(context.Background(), testEvent(i))
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i+1) {
			t.Fatalf("append %d: seq %d", i, seq)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustVerify(t *testing.T, dir string, key *ecdsa.PrivateKey) *Report {
	t.Helper()
	var pub any
	if key != nil {
		pub = &key.PublicKey
	}
	r, err := Verify(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func segPath(dir string, n uint64) string { return filepath.Join(dir, segName(n)) }

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(data), "\n")
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// recordLine returns the index of the k-th record line in lines.
func recordLine(t *testing.T, lines []string, k int) int {
	t.Helper()
	for i, l := range lines {
		if strings.HasPrefix(l, `{"k":"rec"`) {
			if k == 0 {
				return i
			}
			k--
		}
	}
	t.Fatal("not enough records in segment")
	return -1
}

// rehash recomputes a line's hash after an edit, as an attacker who knows
// the format would.
func rehash(line string) string {
	line = strings.TrimSuffix(line, "\n")
	body := line[:len(line)-hashSuffixLen] + "}"
	e, _ := parseLine([]byte(line))
	buf, _ := sealLine([]byte(body), 0, e.Prev)
	return string(buf)
}

func TestLogRoundTrip(t *testing.T) {
	key := newKey(t)
	dir := smallLog(t, key, 200, false)
	r := mustVerify(t, dir, key)
	if !r.OK() {
		t.Fatalf("fresh log does not verify: %+v", r.Problems)
	}
	if r.Records != 200 || r.FirstSeq != 1 || r.LastSeq != 200 || r.Segments < 5 || r.LastSignedSeq != 200 {
		t.Fatalf("report %s", r.Summary())
	}
	var got []Record
	if _, err := Query(context.Background(), dir, Filter{}, func(rec Record) error { got = append(got, rec); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 200 {
		t.Fatalf("query returned %d records", len(got))
	}
	want := testEvent(41)
	if e := got[41].Event; got[41].Seq != 42 || e.Actor != want.Actor || e.RequestID != want.RequestID || !e.Time.Equal(want.Time) || e.Fields["path"] != "/orders/1" {
		t.Fatalf("record 42 = %+v, want %+v", got[41], want)
	}
	// Reopening continues the chain in the same active segment.
	w, err := Open(dir, Options{Signer: key, MaxSegmentBytes: 4096, NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := w.Append(context.Background(), testEvent(200)); err != nil || seq != 201 {
		t.Fatalf("append after reopen: %d, %v", seq, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, key); !r.OK() || r.LastSeq != 201 {
		t.Fatalf("after reopen: %s %+v", r.Summary(), r.Problems)
	}
}

func hasProblem(r *Report, k ProblemKind) bool {
	for _, p := range r.Problems {
		if p.Kind == k {
			return true
		}
	}
	return false
}

// TestVerifyDetectsTampering edits a good log in each way an intruder
// might and checks Verify names what happened.
func TestVerifyDetectsTampering(t *testing.T) {
	key := newKey(t)
	other := newKey(t)
	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   []ProblemKind
		torn   bool
		key    *ecdsa.PrivateKey
	}{
		{name: "modified record", want: []ProblemKind{ProblemModified}, tamper: func(t *testing.T, dir string) {
			lines := readLines(t, segPath(dir, 2))
			i := recordLine(t, lines, 3)
			lines[i] = strings.Replace(lines[i], `"decision":"deny"`, `"decision":"allow"`, 1)
			lines[i] = strings.Replace(lines[i], `"decision":"allow","reason":"no_rule"`, `"decision":"deny"`, 1)
			writeLines(t, segPath(dir, 2), lines)
		}},
		{name: "modified record with recomputed hash", want: []ProblemKind{ProblemChainBreak}, tamper: func(t *testing.T, dir string) {
			lines := readLines(t, segPath(dir, 2))
			i := recordLine(t, lines, 3)
			lines[i] = rehash(strings.Replace(lines[i], "caller-", "intruder-", 1))
			writeLines(t, segPath(dir, 2), lines)
		}},
		{name: "deleted record", want: []ProblemKind{ProblemChainBreak, ProblemSequence}, tamper: func(t *testing.T, dir string) {
			lines := readLines(t, segPath(dir, 3))
			i := recordLine(t, lines, 2)
			writeLines(t, segPath(dir, 3), append(lines[:i:i], lines[i+1:]...))
		}},
		{name: "inserted record", want: []ProblemKind{ProblemChainBreak, ProblemSequence}, tamper: func(t *testing.T, dir string) {
			lines := readLines(t, segPath(dir, 3))
			i := recordLine(t, lines, 2)
			out := append([]string{}, lines[:i+1]...)
			out = append(out, lines[i]) // a copy of a valid record
			writeLines(t, segPath(dir, 3), append(out, lines[i+1:]...))
		}},
		{name: "reordered records", want: []ProblemKind{ProblemChainBreak, ProblemSequence}, tamper: func(t *testing.T, dir string) {
			lines := readLines(t, segPath(dir, 3))
			i, j := recordLine(t, lines, 1), recordLine(t, lines, 2)
			lines[i], lines[j] = lines[j], lines[i]
			writeLines(t, segPath(dir, 3), lines)
		}},
		{name: "deleted middle segment", want: []ProblemKind{ProblemMissingSegment}, tamper: func(t *testing.T, dir string) {
			if err := os.Remove(segPath(dir, 3)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncated sealed segment", want: []ProblemKind{ProblemTruncatedSegment}, tamper: func(t *testing.T, dir string) {
			lines := readLines(t, segPath(dir, 2))
			writeLines(t, segPath(dir, 2), lines[:len(lines)-4]) // SplitAfter leaves a trailing ""
		}},
		{name: "sealed segment cut mid-record", want: []ProblemKind{ProblemTruncatedSegment}, tamper: func(t *testing.T, dir string) {
			data, _ := os.ReadFile(segPath(dir, 2))
			if err := os.WriteFile(segPath(dir, 2), data[:len(data)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "torn tail", torn: true, tamper: func(t *testing.T, dir string) {
			segs, _ := listSegments(dir)
			last := segs[len(segs)-1].Path
			f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString(`{"k":"rec","seq":201,"prev":"00`); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "checkpoint signed by another key", key: other, want: []ProblemKind{ProblemBadSignature}},
		{name: "forged checkpoint signature", want: []ProblemKind{ProblemBadSignature}, tamper: func(t *testing.T, dir string) {
			lines := readLines(t, segPath(dir, 2))
			for i, l := range lines {
				if strings.HasPrefix(l, `{"k":"ckpt"`) {
					e, _ := parseLine([]byte(strings.TrimSuffix(l, "\n")))
					e.Sig[len(e.Sig)-1] ^= 1
					buf, _, _ := appendEntry(nil, &e)
					lines[i] = string(buf)
					break
				}
			}
			writeLines(t, segPath(dir, 2), lines)
		}},
		{name: "oldest segment deleted without retention record", want: []ProblemKind{ProblemHeadMissing}, tamper: func(t *testing.T, dir string) {
			if err := os.Remove(segPath(dir, 1)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "segment renamed", want: []ProblemKind{ProblemMissingSegment}, tamper: func(t *testing.T, dir string) {
			segs, _ := listSegments(dir)
			last := segs[len(segs)-1]
			if err := os.Rename(last.Path, segPath(dir, last.Num+1)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "line of garbage", want: []ProblemKind{ProblemMalformed}, tamper: func(t *testing.T, dir string) {
			lines := readLines(t, segPath(dir, 2))
			i := recordLine(t, lines, 1)
			lines[i] = "hello\n"
			writeLines(t, segPath(dir, 2), lines)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			signer := key
			if tc.key != nil {
				signer = tc.key
			}
			dir := smallLog(t, signer, 120, false)
			if tc.tamper != nil {
				tc.tamper(t, dir)
			}
			r := mustVerify(t, dir, key)
			if tc.torn {
				if r.TornTail == nil || r.Tampered() {
					t.Fatalf("want a torn tail and nothing else, got torn=%v problems=%v", r.TornTail, r.Problems)
				}
				return
			}
			if r.OK() || r.TornTail != nil {
				t.Fatalf("tampering not detected (torn=%v): %s", r.TornTail, r.Summary())
			}
			for _, k := range tc.want {
				if !hasProblem(r, k) {
					t.Errorf("want a %s problem, got %v", k, r.Problems)
				}
			}
		})
	}
}

// TestVerifyWithoutKeySeesEditsButNotSignatures: without the public key the
// chain is still checked, and the report says signatures were not.
func TestVerifyWithoutKeySeesEditsButNotSignatures(t *testing.T) {
	dir := smallLog(t, newKey(t), 50, false)
	r := mustVerify(t, dir, nil)
	if !r.OK() || r.SignaturesChecked || !strings.Contains(r.Summary(), "NOT checked") {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
	lines := readLines(t, segPath(dir, 1))
	i := recordLine(t, lines, 0)
	lines[i] = strings.Replace(lines[i], "orders", "0rders", 1)
	writeLines(t, segPath(dir, 1), lines)
	if r := mustVerify(t, dir, nil); !hasProblem(r, ProblemModified) {
		t.Fatalf("edit not seen without key: %v", r.Problems)
	}
}

// TestOpenCutsTornTail: after a crash mid-write, Verify reports the torn
// tail and leaves it; Open cuts exactly the partial record and continues
// the chain.
func TestOpenCutsTornTail(t *testing.T) {
	key := newKey(t)
	dir := smallLog(t, key, 30, false)
	segs, _ := listSegments(dir)
	last := segs[len(segs)-1].Path
	before, _ := os.ReadFile(last)
	partial := `{"k":"rec","seq":31,"prev":"abc`
	if err := os.WriteFile(last, append(append([]byte{}, before...), partial...), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustVerify(t, dir, key)
	if r.TornTail == nil || r.TornTail.Bytes != int64(len(partial)) || r.Tampered() {
		t.Fatalf("torn tail: %+v problems %v", r.TornTail, r.Problems)
	}
	if after, _ := os.ReadFile(last); len(after) != len(before)+len(partial) {
		t.Fatal("verify changed the file")
	}
	w, err := Open(dir, Options{Signer: key, NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(last); string(after) != string(before) {
		t.Fatalf("open did not cut exactly the torn record: %d bytes, want %d", len(after), len(before))
	}
	if seq, err := w.Append(context.Background(), testEvent(30)); err != nil || seq != 31 {
		t.Fatalf("append after recovery: %d %v", seq, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, key); !r.OK() || r.LastSeq != 31 {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
}

// TestOpenRefusesTamperedTail: damage that is not a torn tail stops Open,
// so the writer never extends a log it cannot vouch for.
func TestOpenRefusesTamperedTail(t *testing.T) {
	key := newKey(t)
	dir := smallLog(t, key, 30, false)
	segs, _ := listSegments(dir)
	last := segs[len(segs)-1].Path
	lines := readLines(t, last)
	i := recordLine(t, lines, 0)
	lines[i] = strings.Replace(lines[i], "orders", "0rders", 1)
	writeLines(t, last, lines)
	w, err := Open(dir, Options{Signer: key, NoCompress: true, Retention: -1})
	if err == nil {
		w.Close()
		t.Fatal("open accepted a tampered active segment")
	}
	if !strings.Contains(err.Error(), "ward audit verify") {
		t.Fatalf("error does not say what to do: %v", err)
	}
}

// TestConcurrentAppendsGroupCommit: many goroutines append at once; every
// seq is unique, the chain verifies, and batches were shared.
func TestConcurrentAppendsGroupCommit(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	f := &countingFS{}
	w, err := Open(dir, Options{Signer: key, MaxSegmentBytes: 64 << 10, SyncInterval: SyncAlways, openFile: f.open})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 32, 100
	seqs := make(chan uint64, workers*each)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				seq, err := w.Append(context.Background(), testEvent(g*each+i))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d acknowledged twice", s)
		}
		seen[s] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d acknowledgements", len(seen))
	}
	r := mustVerify(t, dir, key)
	if !r.OK() || r.Records != workers*each {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
	if syncs := f.syncs(); syncs >= workers*each {
		t.Fatalf("%d fsyncs for %d records: no group commit", syncs, workers*each)
	} else {
		t.Logf("%d records, %d fsyncs", workers*each, syncs)
	}
}

// TestOversizedEventRefused: an event too large to verify as one line is
// refused up front rather than written.
func TestOversizedEventRefused(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := testEvent(0)
	e.Fields = map[string]string{"blob": strings.Repeat("x", MaxEventBytes)}
	if _, err := w.Append(context.Background(), e); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized event: %v", err)
	}
	e.Fields = map[string]string{"blob": strings.Repeat("x", MaxEventBytes-1000)}
	if _, err := w.Append(context.Background(), e); err != nil {
		t.Fatalf("largest event: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, nil); !r.OK() || r.Records != 1 {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
}

// TestUnsignedLogFailsWithKey: a log whose checkpoints carry no signature
// (written without a signer, or stripped) does not pass a check with the
// key.
func TestUnsignedLogFailsWithKey(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{MaxSegmentBytes: 4096, NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := w.Append(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, nil); !r.OK() {
		t.Fatalf("without key: %v", r.Problems)
	}
	r := mustVerify(t, dir, newKey(t))
	if !hasProblem(r, ProblemBadSignature) || !strings.Contains(r.Problems[0].Msg, "not signed") || r.LastSignedSeq != 0 {
		t.Fatalf("unsigned checkpoints with a key: %s %v", r.Summary(), r.Problems)
	}
}

// TestClosedLogIsNotReady: a closed log says so, to Err and to Append, so a
// proxy that checks it before forwarding fails closed instead of serving
// what nothing will record.
func TestClosedLogIsNotReady(t *testing.T) {
	w, err := Open(t.TempDir(), Options{Signer: newKey(t), NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Err(); err != nil {
		t.Fatalf("an open log: Err = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("a closed log: Err = %v, want ErrClosed", err)
	}
	if _, err := w.Append(context.Background(), testEvent(1)); err == nil {
		t.Fatal("a closed log took a record")
	}
}
