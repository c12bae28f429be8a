package demo_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wardsec/ward/internal/cli"
	"github.com/wardsec/ward/internal/demo"
)

// newDemo is a demo whose ward commands run in process, as `ward demo`
// runs them.
func newDemo(out io.Writer) *demo.Demo {
	return &demo.Demo{Out: out, Ward: cli.Run}
}

// syncBuffer is the demo's Out, read while the demo writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTourAndShutdown runs the demo in process (the gateway on a free
// port), checks that each step observed what its title claims, then
// cancels it as Ctrl-C does: Run returns nil promptly, the temporary
// directory is gone and no goroutine is left.
func TestTourAndShutdown(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	d := newDemo(out)
	d.GatewayAddr = "127.0.0.1:0"
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- d.Run(ctx) }()
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		select {
		case err := <-done:
			t.Fatalf("demo stopped before the end of the tour: %v\n%s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no tour after 30s:\n%s", out)
		}
	}
	text := out.String()
	for _, want := range []*regexp.Regexp{
		// 1: alice reads the order and the catalog; the apps see her. Orders
		// started with its database password (issue 16 item 4).
		regexp.MustCompile(`orders/1\n  \{"id":"1".*"db_password":"set".*"caller":\{"user":"alice","app":"shop","peer":"spiffe://demo.ward.local/gateway/edge"\}\}\n  HTTP 200\n`),
		regexp.MustCompile(`catalog/items\n  \{"items":.*"user":"alice".*\n  HTTP 200\n`),
		// 2: bob is refused by the orders policy, a caller without a key by the gateway.
		regexp.MustCompile(`bob.jwt"\)" https://localhost:\d+/orders/1\n  \{"error":"forbidden","reason":"no_rule_matches".*\n  HTTP 403\n`),
		regexp.MustCompile(`alice.jwt"\)" https://localhost:\d+/orders/1\n  \{"error":"unauthorized","reason":"apikey_missing".*\n  HTTP 401\n`),
		// 3: a fresh limit of 3 lets three through, then 429 with Retry-After.
		regexp.MustCompile(`done\n  HTTP/2 200\n  HTTP/2 200\n  HTTP/2 200\n  HTTP/2 429\n  retry-after: \d+\n  HTTP/2 429\n  retry-after: \d+\n`),
		// 4: orders' sidecar refuses catalog.
		regexp.MustCompile(`http://orders/orders/1\n  \{"error":"forbidden","reason":"no_rule_matches","request_id":"\w+"\}\n  HTTP 403\n`),
		// 5 (issue 16 item 4): orders got its password through ward run;
		// catalog's identity is refused it, and no value is printed.
		regexp.MustCompile(`orders got its database password \(db/orders/password\) through ward run`),
		regexp.MustCompile(`\n\$ ward --data-dir "\$D/server" secret get db/orders/password --identity-dir "\$D/sidecar-catalog"\n  ward: .*403 secret_denied.*spiffe://demo\.ward\.local/svc/catalog.*\n\n`),
		// 6 (issue 15): an injection with valid credentials is refused by
		// the WAF, and its record names the rule and where it matched.
		regexp.MustCompile(`/orders/1\?id=1%27%20OR%20%271%27=%271%27%20--\n  \{"error":"forbidden","reason":"waf","request_id":"\w+"\}\n  HTTP 403\n`),
		regexp.MustCompile(`audit query --reason waf --json\n  \{.*"waf":"blocked".*"waf_location":"ARGS:id","waf_rules":"942100","waf_score":"5".*\}\n`),
		// 7 (issue 13 item 3): the tour's own records, in the server's log:
		// the gateway's of its 10 requests, the sidecars' of the 5 it let
		// through (alice's 2, bob's 3 catalog reads) and of the lateral call.
		regexp.MustCompile(`\$ ward --data-dir "\$D/server" audit query --type gateway.request\n  TIME +SEQ +TYPE +DECISION +REASON +ACTOR +USER +SERVICE +SOURCE +REQUEST\n(  \S+ +\d+ +gateway\.request +(allow|deny) .*\n){10}  10 records;`),
		regexp.MustCompile(`\$ ward --data-dir "\$D/server" audit query --type sidecar.request\n  TIME +SEQ +TYPE +DECISION +REASON +ACTOR +USER +SERVICE +SOURCE +REQUEST\n(  \S+ +\d+ +sidecar\.request .*\n){6}  6 records;`),
		// (two spools ship them, so in either order)
		regexp.MustCompile(`(?m)^  \S+ +\d+ +sidecar\.request +allow +\S+ +spiffe://demo\.ward\.local/gateway/edge +alice +orders .*$`),
		regexp.MustCompile(`(?m)^  \S+ +\d+ +sidecar\.request +allow +\S+ +spiffe://demo\.ward\.local/gateway/edge +alice +catalog .*$`),
		regexp.MustCompile(`(?m)^  \S+ +\d+ +sidecar\.request +deny +no_rule_matches +spiffe://demo\.ward\.local/svc/catalog +- +orders .*$`),
		// 7 (issue 14): the lateral call's alert; the bad-key loop banned
		// on the gateway, listed, then lifted.
		regexp.MustCompile(`(?m)^  \S+ +lateral-movement +lateral-movement +spiffe://demo\.ward\.local/svc/catalog +orders +1 .* alert `),
		regexp.MustCompile(`done; echo\n  401 401 401 401 401 (401|403)\n`),
		regexp.MustCompile(`\n  HTTP/2 403\n  x-ward-deny-reason: banned\n`),
		regexp.MustCompile(`(?m)^  auto-[0-9a-f]{12} +source 127\.0\.0\.1 .*DetectionRule/(credential-cycling|auth-failures)$`),
		regexp.MustCompile(`\n  lifted: version \d+ \(was \d+\)\n    -Ban/auto-[0-9a-f]{12}\n`),
	} {
		if !want.MatchString(text) {
			t.Errorf("tour lacks %s:\n%s", want, text)
		}
	}
	// Every request id the tour's answers show is on a record of the
	// proxy that answered: the gateway's, or for the lateral call (which
	// no gateway sees) orders' sidecar's.
	recordLines := regexp.MustCompile(`(?m)^  \S+ +\d+ +(gateway|sidecar)\.request .*$`).FindAllString(text, -1)
	for _, m := range regexp.MustCompile(`"request_id":"(\w+)"`).FindAllStringSubmatch(text, -1) {
		found := false
		for _, l := range recordLines {
			found = found || strings.HasSuffix(l, " "+m[1])
		}
		if !found {
			t.Errorf("request %s of the tour is not among its records:\n%s", m[1], strings.Join(recordLines, "\n"))
		}
	}
	dir := strings.TrimPrefix(regexp.MustCompile(`(?m)^\$ D=(.*)$`).FindString(text), "$ D=")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("demo directory %q: %v", dir, err)
	}
	// Orders' identity, kept where the demo's ward run keeps it, reads the
	// password; its value is nowhere in what the demo printed.
	var pw bytes.Buffer
	if err := cli.Run(ctx, &pw, "--data-dir", filepath.Join(dir, "server"), "secret", "get", "db/orders/password",
		"--identity-dir", filepath.Join(dir, "run-orders")); err != nil || pw.Len() < 16 {
		t.Fatalf("orders' identity reads db/orders/password: %v (%d bytes)", err, pw.Len())
	}
	if strings.Contains(out.String(), pw.String()) {
		t.Errorf("the demo printed the orders database password:\n%s", out)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo directory %s left behind: %v", dir, err)
	}
}

// TestPortTaken: a busy gateway port stops the demo at once with a
// message that says what to do, before anything starts.
func TestPortTaken(t *testing.T) {
	defer goleak.VerifyNone(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out bytes.Buffer
	d := newDemo(&out)
	d.GatewayAddr, d.Exit = l.Addr().String(), true
	err = d.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "another program uses") {
		t.Fatalf("got %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed a tour anyway:\n%s", out.String())
	}
}
