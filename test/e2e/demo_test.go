package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs `ward demo` as a user does, waits for its tour, runs every
// command the tour prints with bash, verbatim, and checks that each does
// what the tour says, as does what the demo printed under it. Then Ctrl-C:
// the process exits 0 within seconds, its directory and ports released.
func TestDemo(t *testing.T) {
	need(t, "bash", "curl")
	waitPortFree(t, "127.0.0.1:8443", 20*time.Second)

	out := &lockedBuffer{}
	cmd := exec.Command(wardBin, "demo")
	cmd.Dir = t.TempDir()
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("ward demo exited before its tour (%v):\n%s", err, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no tour after 30s:\n%s", out)
		}
	}
	t.Logf("tour printed after %s", time.Since(start).Round(time.Millisecond))
	tour := out.String()
	cmds, observed := parseTour(tour)

	// The commands, in the order the tour gives them, and what each must
	// show: first a line that sets $D, then the steps.
	type expect struct {
		cmd  *regexp.Regexp // which command this is
		resp *regexp.Regexp // what it must print
	}
	expects := []expect{
		{regexp.MustCompile(`^D=/\S+$`), regexp.MustCompile(`^$`)},
		{regexp.MustCompile(`apikey.*alice\.jwt.* https://localhost:8443/orders/1$`),
			regexp.MustCompile(`^\{"id":"1",.*"caller":\{"user":"alice","app":"shop","peer":"spiffe://demo.ward.local/gateway/edge"\}\}\nHTTP 200$`)},
		{regexp.MustCompile(`apikey.*alice\.jwt.* https://localhost:8443/catalog/items$`),
			regexp.MustCompile(`^\{"items":\[.*"caller":\{"user":"alice","app":"shop",.*\nHTTP 200$`)},
		{regexp.MustCompile(`apikey.*bob\.jwt.* https://localhost:8443/orders/1$`),
			regexp.MustCompile(`^\{"error":"forbidden","reason":"no_rule_matches","request_id":"\w+"\}\nHTTP 403$`)},
		{regexp.MustCompile(`^curl -s -w 'HTTP %\{http_code\}\\n' --cacert "\$D/server/bundle.pem" -H "Authorization: Bearer \$\(cat "\$D/alice\.jwt"\)" https://localhost:8443/orders/1$`), // no key
			regexp.MustCompile(`^\{"error":"unauthorized","reason":"apikey_missing","request_id":"\w+"\}\nHTTP 401$`)},
		// Five answers, each a 200 or a 429 with Retry-After. The demo ran
		// this loop a moment ago and the bucket refills one request every
		// 3.3 s, so how many pass depends on timing; that at least two of
		// five are refused is counted below.
		{regexp.MustCompile(`^for i in 1 2 3 4 5; do curl .*bob\.jwt.* https://localhost:8443/catalog/items .*; done$`),
			regexp.MustCompile(`^(HTTP/2 200|HTTP/2 429\nretry-after: [1-9]\d*)(\n(HTTP/2 200|HTTP/2 429\nretry-after: [1-9]\d*)){4}$`)},
		{regexp.MustCompile(`^curl .* -x http://127\.0\.0\.1:\d+ http://orders/orders/1$`),
			regexp.MustCompile(`^\{"error":"forbidden","reason":"no_rule_matches","request_id":"\w+"\}\nHTTP 403$`)},
		// Catalog's identity is refused orders' database password: an
		// error, no value (issue 16 item 4).
		{regexp.MustCompile(`^ward --data-dir "\$D/server" secret get db/orders/password --identity-dir "\$D/sidecar-catalog"$`),
			regexp.MustCompile(`^ward: .*403 secret_denied.*spiffe://demo\.ward\.local/svc/catalog.*db/orders/password.*$`)},
		// An injection with valid credentials: refused by the WAF, and the
		// record names the rule (issue 15).
		{regexp.MustCompile(`apikey.*alice\.jwt.* https://localhost:8443/orders/1\?id=1%27%20OR%20%271%27=%271%27%20--$`),
			regexp.MustCompile(`^\{"error":"forbidden","reason":"waf","request_id":"\w+"\}\nHTTP 403$`)},
		{regexp.MustCompile(`^ward --data-dir "\$D/server" audit query --reason waf --json$`),
			regexp.MustCompile(`^(\{.*"reason":"waf".*"waf":"blocked","waf_location":"ARGS:id","waf_rules":"942100","waf_score":"5"\}\}\n)+\d+ records; read .*$`)},
		// The records of every request above, in the server's audit log
		// (the shell's own requests may not have been shipped yet).
		{regexp.MustCompile(`^ward --data-dir "\$D/server" audit query --type gateway\.request$`),
			regexp.MustCompile(`^TIME +SEQ +TYPE +DECISION +REASON +ACTOR +USER +SERVICE +SOURCE +REQUEST(\n\S+ +\d+ +gateway\.request +(allow|deny) .*){9,}\n\d+ records; read .*$`)},
		{regexp.MustCompile(`^ward --data-dir "\$D/server" audit query --type sidecar\.request$`),
			regexp.MustCompile(`^TIME +SEQ +TYPE +DECISION +REASON +ACTOR +USER +SERVICE +SOURCE +REQUEST(\n\S+ +\d+ +sidecar\.request +(allow|deny) .*){6,}\n\d+ records; read .*$`)},
		// Discovery (issue 18): both services registered, no address in
		// ward.yaml; a second orders instance shares the traffic and stops
		// without a failed request.
		{regexp.MustCompile(`^ward --data-dir "\$D/server" instances$`),
			regexp.MustCompile(`^SERVICE +ID +ADDRESS +AGE +HEALTH +LABELS +SERIAL\ncatalog +[0-9a-f]{24} +127\.0\.0\.1:\d+ +\S+ +ok +instance=catalog-1 +[0-9a-f]+\norders +[0-9a-f]{24} +127\.0\.0\.1:\d+ +\S+ +ok +instance=orders-1 +[0-9a-f]+$`)},
		{regexp.MustCompile(`^ward demo instance orders --dir "\$D" > "\$D/orders-2\.log" 2>&1 & .*cat "\$D/orders-2\.log"$`),
			regexp.MustCompile(`^orders-2 registered: [0-9a-f]{24} at 127\.0\.0\.1:\d+$`)},
		{regexp.MustCompile(`^for i in \$\(seq 20\); do curl .*https://localhost:8443/orders/1 \| grep -o .*uniq -c$`),
			regexp.MustCompile(`^ +[1-9]\d* "instance":"orders-1"\n +[1-9]\d* "instance":"orders-2"$`)},
		{regexp.MustCompile(`^\(sleep 1; kill "\$\(cat "\$D/orders-2\.pid"\)"\) & for i in \$\(seq 40\); do curl .*; wait$`),
			regexp.MustCompile(`^ +40 200$`)},
		{regexp.MustCompile(`^ward --data-dir "\$D/server" instances orders$`),
			regexp.MustCompile(`^SERVICE .*\norders +[0-9a-f]{24} +127\.0\.0\.1:\d+ +\S+ +ok +instance=orders-1 +[0-9a-f]+$`)},
		// Detection (issue 14): the lateral call's alert; a loop of made-up
		// keys banned at the gateway, the ban listed, then lifted.
		{regexp.MustCompile(`^ward --data-dir "\$D/server" alerts --rule lateral-movement$`),
			regexp.MustCompile(`^TIME +RULE +SIGNAL .*(\n\S+ +lateral-movement +lateral-movement +spiffe://demo\.ward\.local/svc/catalog +orders +1 .*)+$`)},
		{regexp.MustCompile(`^for i in 2 3 4 5 6 7; do curl .*wak_aaaaaaa\$\{i\}_made-up.* https://localhost:8443/catalog/items; done; echo$`),
			regexp.MustCompile(`^(401|403)( (401|403)){5}$`)},
		{regexp.MustCompile(`^for i in \$\(seq 50\); do curl .*x-ward-deny-reason: banned.*$`),
			regexp.MustCompile(`^HTTP/2 403\nx-ward-deny-reason: banned$`)},
		{regexp.MustCompile(`^ward --data-dir "\$D/server" ban list$`),
			regexp.MustCompile(`^NAME +CALLER .*\nauto-[0-9a-f]{12} +source 127\.0\.0\.1 .*DetectionRule/(credential-cycling|auth-failures)$`)},
		{regexp.MustCompile(`^ward --data-dir "\$D/server" ban remove auto-[0-9a-f]{12}$`),
			regexp.MustCompile(`^lifted: version \d+ \(was \d+\)\n  -Ban/auto-[0-9a-f]{12}$`)},
		// A one-time link into the dashboard (issue 17).
		{regexp.MustCompile(`^ward --data-dir "\$D/server" dashboard login$`),
			regexp.MustCompile(`^https://\S+/ui/login\?token=[A-Za-z0-9_-]{43}(\nopen it in a browser before .*)?$`)},
	}
	if len(cmds) != len(expects) {
		t.Fatalf("tour has %d commands, want %d:\n%s", len(cmds), len(expects), tour)
	}
	for i, e := range expects {
		if !e.cmd.MatchString(cmds[i]) {
			t.Fatalf("command %d is not the expected one (%s):\n%s", i, e.cmd, cmds[i])
		}
	}
	// What the demo observed itself: a fresh limit lets exactly three
	// pass, and the log holds exactly the tour's records: 10 requests at
	// the gateway, 5 of them forwarded to a sidecar, and the lateral call.
	for i, e := range expects {
		switch i {
		case 5:
			e.resp = regexp.MustCompile(`^HTTP/2 200\nHTTP/2 200\nHTTP/2 200\nHTTP/2 429\nretry-after: [1-9]\d*\nHTTP/2 429\nretry-after: [1-9]\d*$`)
		case 10:
			e.resp = regexp.MustCompile(`^TIME .*(\n\S+ +\d+ +gateway\.request .*){10}\n10 records; read .*$`)
		case 11:
			e.resp = regexp.MustCompile(`^TIME .*(\n\S+ +\d+ +sidecar\.request .*){6}\n6 records; read .*$`)
		}
		if !e.resp.MatchString(observed[i]) {
			t.Errorf("the demo printed under %q:\n%s\nwant %s", cmds[i], observed[i], e.resp)
		}
	}

	// The secrets the commands read are the user's only.
	dir := strings.TrimPrefix(cmds[0], "D=")
	for _, f := range []string{"apikey", "alice.jwt", "bob.jwt"} {
		if fi, err := os.Stat(dir + "/" + f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}

	// Every command, verbatim, in one shell as a user pastes them.
	var script strings.Builder
	for i, c := range cmds {
		fmt.Fprintf(&script, "echo '@@@ %d'\n%s\n", i, c)
	}
	sh := exec.Command("bash", "-c", script.String())
	sh.Dir = t.TempDir()
	sh.Env = append(noProxyEnv(), "PATH="+filepath.Dir(wardBin)+string(os.PathListSeparator)+os.Getenv("PATH")) // ward as installed
	got, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("tour commands: %v\n%s", err, got)
	}
	results := regexp.MustCompile(`(?m)^@@@ \d+\n`).Split(string(got), -1)[1:]
	if len(results) != len(cmds) {
		t.Fatalf("got %d results for %d commands:\n%s", len(results), len(cmds), got)
	}
	for i, e := range expects {
		res := strings.ReplaceAll(strings.TrimRight(results[i], "\n"), "\r", "")
		res = regexp.MustCompile(`(?m) +$`).ReplaceAllString(res, "") // curl's "HTTP/2 200 "
		if !e.resp.MatchString(res) {
			t.Errorf("$ %s\n%s\nwant %s", cmds[i], res, e.resp)
		}
		if i == 5 && strings.Count(res, "HTTP/2 429") < 2 {
			t.Errorf("the rate limit let more than 3 of 5 requests through:\n%s", res)
		}
	}

	// Orders started with its password (its answer says so, in the tour
	// and to the pasted curl), read with its identity as ward run reads
	// it; the value is in nothing the demo or the commands printed.
	if !strings.Contains(tour, "orders got its database password (db/orders/password) through ward run") ||
		!strings.Contains(observed[1], `"db_password":"set"`) || !strings.Contains(results[1], `"db_password":"set"`) {
		t.Errorf("the tour does not show orders started with its password:\n%s\n%s", tour, results[1])
	}
	pw, err := ward(t, t.TempDir(), "--data-dir", dir+"/server", "secret", "get", "db/orders/password", "--identity-dir", dir+"/run-orders")
	if err != nil || len(pw) < 16 {
		t.Fatalf("orders' identity reads db/orders/password: %v (%d bytes)", err, len(pw))
	}
	if strings.Contains(out.String(), pw) || strings.Contains(string(got), pw) {
		t.Errorf("the orders database password was printed by the demo or the tour's commands")
	}

	// A second demo while this one runs is refused with a clear message.
	if second, err := ward(t, t.TempDir(), "demo", "--exit"); err == nil || !strings.Contains(second, "127.0.0.1:8443, which another program uses") {
		t.Errorf("second demo: %v\n%s", err, second)
	}

	// Ctrl-C.
	outbound := regexp.MustCompile(`-x http://(\S+)`).FindStringSubmatch(cmds[6])[1]
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("ward demo after Ctrl-C: %v\n%s", err, out)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ward demo still running 10s after Ctrl-C:\n%s", out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo directory %s left behind: %v", dir, err)
	}
	for _, addr := range []string{"127.0.0.1:8443", outbound} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still bound after the demo exited: %v", addr, err)
			continue
		}
		l.Close()
	}
}

// parseTour returns the commands of a tour ("$ " lines) and, for each, the
// indented lines printed under it, unindented.
func parseTour(tour string) (cmds, observed []string) {
	open := false // the lines since the last command are its output
	for line := range strings.SplitSeq(tour, "\n") {
		switch {
		case strings.HasPrefix(line, "$ "):
			cmds = append(cmds, strings.TrimPrefix(line, "$ "))
			observed = append(observed, "")
			open = true
		case open && strings.HasPrefix(line, "  "):
			if o := &observed[len(observed)-1]; *o == "" {
				*o = line[2:]
			} else {
				*o += "\n" + line[2:]
			}
		default: // a blank line or a title ends a command's output
			open = false
		}
	}
	return cmds, observed
}

// waitPortFree waits until addr can be bound (another test's process may
// still be releasing it).
func waitPortFree(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(200 * time.Millisecond) {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stays busy: %v", addr, err)
		}
	}
}

// noProxyEnv is the environment without proxy settings, which would send
// curl's requests elsewhere.
func noProxyEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasSuffix(strings.ToLower(k), "_proxy") {
			env = append(env, kv)
		}
	}
	return env
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reset empties the buffer.
func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}
