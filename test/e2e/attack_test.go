package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// attackRules makes the default rules' bans short, so that the tests see
// them end.
const attackRules = `---
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: credential-cycling}
spec: {signal: credential-cycling, threshold: 5, window: 1m, banTTL: %[1]s}
---
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: auth-failures}
spec: {signal: auth-failure, threshold: 20, window: 1m, banTTL: %[1]s}
`

// gatewayProc is a gateway process following the server.
type gatewayProc struct {
	name, addr string
	p          *proc
}

// attackSetup applies the edge resources with short bans and starts n
// gateways that follow the server; it returns them and an API key.
func attackSetup(t *testing.T, e *edgeSetup, n int, banTTL string) ([]*gatewayProc, string) {
	t.Helper()
	raw, err := os.ReadFile(e.serverResources())
	if err != nil {
		t.Fatal(err)
	}
	set := filepath.Join(e.dir, "set.yaml")
	if err := os.WriteFile(set, append(raw, fmt.Sprintf(attackRules, banTTL)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := ward(t, e.dir, "apply", "-f", set, "--data-dir", e.data); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	key := e.apiKey("shop", "orders")
	var gws []*gatewayProc
	for i := 1; i <= n; i++ {
		name, addr := fmt.Sprintf("edge%d", i), freeAddr(t)
		args := []string{"gateway", "--name", name, "--listen", addr, "--tls-ward-ca",
			"--data-dir", filepath.Join(e.dir, name), "--server", e.server, "--bundle", filepath.Join(e.data, "bundle.pem")}
		p := startProc(t, e.dir, append(args, "--token", e.token("spiffe://example.org/gateway/"+name))...)
		p.args = args
		waitListening(t, addr)
		e.waitReady(addr, key)
		gws = append(gws, &gatewayProc{name: name, addr: addr, p: p})
	}
	return gws, key
}

// expectBanned waits up to within for every gateway to answer 403 banned.
func expectBanned(t *testing.T, e *edgeSetup, gws []*gatewayProc, key string, within time.Duration) {
	t.Helper()
	for _, g := range gws {
		deadline := time.Now().Add(within)
		for {
			status, reason, _ := e.call(g.addr, "/orders/1", key, "")
			if status == 403 && reason == "banned" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d %s, want 403 banned", g.name, status, reason)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// restartAndExpire restarts every gateway, checks the ban still holds,
// then that it ends with its TTL.
func restartAndExpire(t *testing.T, e *edgeSetup, gws []*gatewayProc, key string, end time.Time) {
	t.Helper()
	for _, g := range gws {
		g.p.stop()
		g.p.start()
	}
	for _, g := range gws {
		waitListening(t, g.addr)
	}
	expectBanned(t, e, gws, key, 10*time.Second)
	if time.Now().After(end) {
		t.Fatal("the restarts took past the ban's end: raise the TTL")
	}
	time.Sleep(time.Until(end))
	for _, g := range gws {
		deadline := time.Now().Add(3 * time.Second) // the ban's end is rounded to the second
		for {
			status, reason, _ := e.call(g.addr, "/orders/1", key, "")
			if reason != "banned" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the ban's TTL: %d %s", g.name, status, reason)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestFfufCyclingAPIKeys: ffuf cycles 40 made-up API keys through one
// gateway; the default credential-cycling rule bans the address on every
// gateway, through their restart, until the ban's TTL.
func TestFfufCyclingAPIKeys(t *testing.T) {
	need(t, "ffuf")
	e := newEdgeSetup(t)
	gws, key := attackSetup(t, e, 3, "20s")
	words := filepath.Join(e.dir, "keys.txt")
	var b strings.Builder
	const alpha = "abcdefghijklmnopqrstuvwxyz234567"
	for i := range 40 {
		fmt.Fprintf(&b, "wak_%c%c%s_%s\n", alpha[i%32], alpha[i/32], "zzzzzz", strings.Repeat("A", 43))
	}
	if err := os.WriteFile(words, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command("ffuf", "-s", "-t", "1", "-mc", "all", "-w", words,
		"-u", "https://"+gws[0].addr+"/orders/1", "-H", "X-Api-Key: FUZZ")
	cmd.Dir = e.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ffuf: %v\n%s", err, out)
	}
	expectBanned(t, e, gws, key, 5*time.Second)
	t.Logf("ffuf start -> banned on %d gateways in %v", len(gws), time.Since(start).Round(time.Millisecond))
	alerts, err := ward(t, e.dir, "alerts", "--rule", "credential-cycling", "--data-dir", e.data)
	if err != nil || !strings.Contains(alerts, "127.0.0.1") || !strings.Contains(alerts, " ban ") {
		t.Fatalf("ward alerts: %v\n%s", err, alerts)
	}
	restartAndExpire(t, e, gws, key, banEnd(t, e))
}

// TestHydraBruteForce: hydra brute-forces HTTP basic credentials through
// a route (which wants an API key and a JWT): the default auth-failures
// rule bans the address on every gateway, through their restart, until
// the ban's TTL.
func TestHydraBruteForce(t *testing.T) {
	need(t, "hydra")
	e := newEdgeSetup(t)
	gws, key := attackSetup(t, e, 3, "20s")
	users, pass := filepath.Join(e.dir, "users.txt"), filepath.Join(e.dir, "pass.txt")
	if err := os.WriteFile(users, []byte("admin\nroot\nalice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pass, []byte("123456\npassword\nletmein\nqwerty\nhunter2\nadmin\nwelcome\nsecret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(gws[1].addr, ":")
	start := time.Now()
	cmd := exec.Command("hydra", "-I", "-t", "1", "-L", users, "-P", pass, "-s", port, "-S", host, "https-get", "/orders/1")
	cmd.Dir = e.dir
	out, _ := cmd.CombinedOutput() // hydra fails when it finds nothing
	if !strings.Contains(string(out), "Hydra") {
		t.Fatalf("hydra did not run:\n%s", out)
	}
	expectBanned(t, e, gws, key, 5*time.Second)
	t.Logf("hydra start -> banned on %d gateways in %v", len(gws), time.Since(start).Round(time.Millisecond))
	alerts, err := ward(t, e.dir, "alerts", "--rule", "auth-failures", "--data-dir", e.data)
	if err != nil || !strings.Contains(alerts, "127.0.0.1") || !strings.Contains(alerts, " ban ") {
		t.Fatalf("ward alerts: %v\n%s", err, alerts)
	}
	restartAndExpire(t, e, gws, key, banEnd(t, e))
}

// banEnd reads the end of the one ban in force from `ward ban list`.
func banEnd(t *testing.T, e *edgeSetup) time.Time {
	t.Helper()
	out, err := ward(t, e.dir, "ban", "list", "--data-dir", e.data)
	if err != nil {
		t.Fatalf("ban list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		t.Fatalf("no ban listed:\n%s", out)
	}
	f := strings.Fields(lines[1])
	end, err := time.Parse(time.RFC3339, f[3])
	if err != nil {
		t.Fatalf("ban list: %v\n%s", err, out)
	}
	return end
}
