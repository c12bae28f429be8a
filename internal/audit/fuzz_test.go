package audit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzKeyPEM signs the committed fuzz corpus, so that the corpus holds
// checkpoints whose signatures verify. A test key, never used elsewhere.
const fuzzKeyPEM = `-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFSZ63Kg9oNF5YMreFnEJevKRb/EFIPDAk4s0gez/8vRoAoGCCqGSM49
AwEHoUQDQgAEzmxQ4q41UDbnvLnc2PD1R/3ORlJzrX+xE9rgC9Ag3KiI1HXVryCR
jJNc4oCFQHRSPu6VH4reD+46ofbtDO+fKA==
-----END EC PRIVATE KEY-----
`

func fuzzKey(t testing.TB) *ecdsa.PrivateKey {
	b, _ := pem.Decode([]byte(fuzzKeyPEM))
	k, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzVerifySegment feeds untrusted bytes to the segment reader Verify
// uses. It must never panic or hang, a clean report must mean every line
// was a well-formed entry, and a valid segment with a fragment appended
// must read as a torn tail, not as tampering.
func FuzzVerifySegment(f *testing.F) {
	key := fuzzKey(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		v := newVerifier(&key.PublicKey)
		if err := v.segment(1, bytes.NewReader(data), true); err != nil {
			t.Fatalf("read error from a bytes.Reader: %v", err)
		}
		v.finish(1)
		r := &v.r
		if r.OK() {
			lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
			var recs uint64
			for i, l := range lines {
				e, err := parseLine(l)
				if err != nil {
					t.Fatalf("clean report but line %d does not parse: %v", i+1, err)
				}
				if e.Kind == kindRecord {
					recs++
				}
			}
			if recs != r.Records {
				t.Fatalf("report counts %d records, input has %d", r.Records, recs)
			}
			if len(data) > 0 && data[len(data)-1] == '\n' {
				torn := append(append([]byte{}, data...), `{"k":"rec","se`...)
				v := newVerifier(&key.PublicKey)
				_ = v.segment(1, bytes.NewReader(torn), true)
				if v.r.TornTail == nil || v.r.Tampered() {
					t.Fatalf("a torn fragment after a clean segment reads as %v / %v", v.r.TornTail, v.r.Problems)
				}
			}
		}
	})
}

// FuzzParseLine checks the two parsers of a line agree: when the full
// parser accepts a record, the fast one used by Query reads the same seq.
func FuzzParseLine(f *testing.F) {
	f.Fuzz(func(t *testing.T, line []byte) {
		var fast entry
		if parseRecordHead(line, &fast) {
			var slow entry
			if err := json.Unmarshal(append(append([]byte{}, line...), '}'), &slow); err != nil {
				t.Fatalf("fast path accepts what encoding/json rejects: %v", err)
			}
			if slow.Kind != fast.Kind || slow.Seq != fast.Seq || slow.Prev != fast.Prev || !bytes.Equal(slow.Event, fast.Event) {
				t.Fatalf("fast path reads %+v, encoding/json %+v", fast, slow)
			}
		}
		e, err := parseLine(line)
		if _, ok := fastTime(line); ok && len(line) == 0 {
			t.Fatal("time from nothing")
		}
		if err != nil || e.Kind != kindRecord {
			_, _ = parseRecordFast(line)
			return
		}
		if !bytes.HasPrefix(line, []byte(`{"k":"rec","seq":`)) {
			return // valid JSON with another key order: not what the writer writes
		}
		r, ferr := parseRecordFast(line)
		if ferr == nil && r.Seq != e.Seq {
			t.Fatalf("fast parser reads seq %d, full parser %d", r.Seq, e.Seq)
		}
	})
}

// TestWriteFuzzCorpus regenerates the committed seed corpora when
// WARD_AUDIT_WRITE_CORPUS=1; otherwise it checks they are there.
func TestWriteFuzzCorpus(t *testing.T) {
	write := os.Getenv("WARD_AUDIT_WRITE_CORPUS") == "1"
	for _, name := range []string{"FuzzVerifySegment", "FuzzParseLine"} {
		dir := filepath.Join("testdata", "fuzz", name)
		if !write {
			ents, err := os.ReadDir(dir)
			if err != nil || len(ents) < 5 {
				t.Fatalf("seed corpus %s missing (%v): run WARD_AUDIT_WRITE_CORPUS=1 go test -run TestWriteFuzzCorpus", dir, err)
			}
		}
	}
	if !write {
		return
	}
	key := fuzzKey(t)
	logDir := smallLog(t, key, 30, false)
	seg1, err := os.ReadFile(segPath(logDir, 1))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(seg1), "\n")
	rec := lines[recordLine(t, lines, 0)]
	segs := map[string]string{
		"valid":         string(seg1),
		"torn":          string(seg1) + `{"k":"rec","seq":99,"prev":"0`,
		"modified":      strings.Replace(string(seg1), "caller-1", "caller-9", 1),
		"reordered":     lines[0] + lines[2] + lines[1] + strings.Join(lines[3:], ""),
		"empty":         "",
		"garbage":       "not json at all\n\x00\xff{}\n",
		"header_only":   lines[0],
		"long_line":     strings.Repeat("x", 70000) + "\n",
		"bad_signature": strings.Replace(string(seg1), `"sig":"M`, `"sig":"N`, 1),
	}
	lineSeeds := map[string]string{
		"record":       strings.TrimSuffix(rec, "\n"),
		"record_head":  strings.TrimSuffix(rec, "\n")[:len(strings.TrimSuffix(rec, "\n"))-hashSuffixLen],
		"header":       strings.TrimSuffix(lines[0], "\n"),
		"checkpoint":   strings.TrimSuffix(lines[len(lines)-2], "\n"),
		"no_hash":      `{"k":"rec","seq":1,"prev":"00","ev":{}}`,
		"short":        `{}`,
		"other_order":  `{"seq":1,"k":"rec"}`,
		"bad_ev_time":  strings.Replace(strings.TrimSuffix(rec, "\n"), `"time":"2026`, `"time":"x026`, 1),
		"unknown_kind": strings.Replace(strings.TrimSuffix(rec, "\n"), `"k":"rec"`, `"k":"zzz"`, 1),
	}
	for name, seeds := range map[string]map[string]string{"FuzzVerifySegment": segs, "FuzzParseLine": lineSeeds} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for seed, data := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(dir, seed), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
