package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const secretsPolicy = `apiVersion: ward/v1
kind: SecretPolicy
metadata: {name: orders-secrets}
spec:
  readers: [svc/orders]
  paths: ["orders/**"]
`

// vaultSetup is a running server with the orders SecretPolicy and one
// secret, orders/db/password, of a random value.
type vaultSetup struct {
	t      *testing.T
	srv    *serverProc
	dir    string // the test's working directory
	server string // API URL
	value  string
}

func newVaultSetup(t *testing.T) *vaultSetup {
	t.Helper()
	v := &vaultSetup{t: t, srv: startServerProc(t, "127.0.0.1:0", "127.0.0.1:0"), dir: t.TempDir()}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	v.value = "pw-" + hex.EncodeToString(raw)
	var info struct{ Server string }
	data, err := os.ReadFile(filepath.Join(v.srv.dataDir, "client.json"))
	if err != nil || json.Unmarshal(data, &info) != nil {
		t.Fatalf("client.json: %v", err)
	}
	v.server = info.Server
	if err := os.WriteFile(filepath.Join(v.dir, "policy.yaml"), []byte(secretsPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	v.ward("apply", "-f", "policy.yaml")
	put := exec.Command(wardBin, "secret", "put", "orders/db/password", "--data-dir", v.srv.dataDir)
	put.Stdin = strings.NewReader(v.value + "\n")
	if out, err := put.CombinedOutput(); err != nil || !strings.Contains(string(out), "orders/db/password version 1") {
		t.Fatalf("secret put: %v\n%s", err, out)
	}
	return v
}

// ward runs an operator command that must succeed.
func (v *vaultSetup) ward(args ...string) string {
	v.t.Helper()
	out, err := ward(v.t, v.dir, append(args, "--data-dir", v.srv.dataDir)...)
	if err != nil {
		v.t.Fatalf("ward %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runArgs are the arguments of `ward run` for service, enrolling with a
// fresh join token.
func (v *vaultSetup) runArgs(service string, secrets ...string) []string {
	cmd := exec.Command(wardBin, "token", "create", "--id", "spiffe://example.org/svc/"+service, "--data-dir", v.srv.dataDir)
	out, err := cmd.Output() // the token alone, on standard output
	if err != nil {
		v.t.Fatalf("token create: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	args := []string{"run", "--server", v.server, "--bundle", filepath.Join(v.srv.dataDir, "bundle.pem"),
		"--service", service, "--token", tok, "--data-dir", filepath.Join(v.dir, service+"-id")}
	for _, s := range secrets {
		args = append(args, "--secret"+strings.SplitN(s, " ", 2)[0], strings.SplitN(s, " ", 2)[1])
	}
	return args
}

// waitFile waits for path to exist.
func waitFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
	}
}

// cmdlinesHolding returns the processes whose command line holds s.
func cmdlinesHolding(t *testing.T, s string) []string {
	t.Helper()
	paths, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil || len(paths) == 0 {
		t.Fatalf("cannot list /proc/*/cmdline: %v", err)
	}
	var out []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(s)) {
			out = append(out, p+": "+strings.ReplaceAll(string(data), "\x00", " "))
		}
	}
	return out
}

// filesHolding returns the files under dir whose bytes hold s.
func filesHolding(t *testing.T, dir, s string, skip ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		for _, sk := range skip {
			if p == sk {
				return nil
			}
		}
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(s)) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRunGivesTheAppItsSecretAndNobodyElse is issue 16's first Done-when
// item: `ward run` starts the app with its secret in its environment,
// while no process's command line, no log, no audit record and no file of
// the server's data directory holds the value; the app's exit status
// passes through, and a denied identity's app is never started.
func TestRunGivesTheAppItsSecretAndNobodyElse(t *testing.T) {
	need(t, "sh")
	v := newVaultSetup(t)
	got, release := filepath.Join(v.dir, "got"), filepath.Join(v.dir, "release")
	app := `printf %s "$DB_PASSWORD" > got; while [ ! -f release ]; do sleep 0.05; done; exit 7`
	run := exec.Command(wardBin, append(v.runArgs("orders", " DB_PASSWORD=orders/db/password"), "--", "sh", "-c", app)...)
	run.Dir = v.dir
	var runLogs bytes.Buffer
	run.Stdout, run.Stderr = &runLogs, &runLogs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, got)
	// While the app runs: its environment has the secret, no command line does.
	data, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != v.value {
		t.Fatalf("the app's DB_PASSWORD is %q, want the stored value", data)
	}
	if procs := cmdlinesHolding(t, v.value); len(procs) > 0 {
		t.Fatalf("command lines hold the secret: %v", procs)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err = run.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("ward run exited with %v, want the app's status 7\n%s", err, runLogs.String())
	}
	if strings.Contains(runLogs.String(), v.value) {
		t.Fatalf("ward run's output holds the secret:\n%s", runLogs.String())
	}

	// A denied identity: a clear error, and the app never starts.
	started := filepath.Join(v.dir, "catalog-started")
	out, err := ward(t, v.dir, append(v.runArgs("catalog", " DB_PASSWORD=orders/db/password"), "--", "sh", "-c", "touch catalog-started")...)
	if err == nil || !strings.Contains(out, "secret_denied") || !strings.Contains(out, "the app was not started") || !strings.Contains(out, "DB_PASSWORD (orders/db/password)") {
		t.Fatalf("ward run as catalog: %v, want a refusal naming the secret\n%s", err, out)
	}
	if _, err := os.Stat(started); err == nil {
		t.Fatal("catalog's app was started although its secret was denied")
	}
	// A missing secret: the same.
	out, err = ward(t, v.dir, append(v.runArgs("orders", " X=orders/none"), "--", "sh", "-c", "touch orders-started")...)
	if err == nil || !strings.Contains(out, "not_found") {
		t.Fatalf("ward run with a missing secret: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(v.dir, "orders-started")); err == nil {
		t.Fatal("the app was started although its secret is missing")
	}

	// The audit trail has the reads and the refusal, never the value.
	records := v.ward("audit", "query", "--json", "--type", "secret.read")
	if !strings.Contains(records, `"spiffe://example.org/svc/orders"`) || !strings.Contains(records, "secret_denied") {
		t.Fatalf("audit records lack the allowed read or the refusal:\n%s", records)
	}
	if strings.Contains(records, v.value) || strings.Contains(v.srv.logs.String(), v.value) {
		t.Fatal("the audit records or the server log hold the secret")
	}
	if files := filesHolding(t, v.srv.dataDir, v.value); len(files) > 0 {
		t.Fatalf("files of the server's data directory hold the secret in the clear: %v", files)
	}
	if files := filesHolding(t, v.dir, v.value, got); len(files) > 0 {
		t.Fatalf("files of ward run's directory hold the secret: %v", files)
	}
}

// TestRunSecretFilesAndSignals: --secret-file writes the value to a 0600
// file in a private directory, run forwards a signal to the app and exits
// with its status, and removes the file afterwards.
func TestRunSecretFilesAndSignals(t *testing.T) {
	need(t, "sh")
	v := newVaultSetup(t)
	app := `trap 'exit 42' TERM; cp "$DB_PASSWORD" got; stat -c %a "$DB_PASSWORD" > mode; echo "$DB_PASSWORD" > where; while :; do sleep 0.05; done`
	run := exec.Command(wardBin, append(v.runArgs("orders", "-file DB_PASSWORD=orders/db/password"), "--", "sh", "-c", app)...)
	run.Dir = v.dir
	var runLogs bytes.Buffer
	run.Stdout, run.Stderr = &runLogs, &runLogs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(v.dir, "where"))
	for name, want := range map[string]string{"got": v.value, "mode": "600\n"} {
		data, err := os.ReadFile(filepath.Join(v.dir, name))
		if err != nil || string(data) != want {
			t.Fatalf("%s = %q, %v; want %q", name, data, err, want)
		}
	}
	where, _ := os.ReadFile(filepath.Join(v.dir, "where"))
	file := strings.TrimSpace(string(where))
	if fi, err := os.Stat(filepath.Dir(file)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the secret file's directory: %v, %v; want mode 0700", fi, err)
	}
	if err := run.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := run.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Fatalf("ward run exited with %v, want the app's status 42 after SIGTERM\n%s", err, runLogs.String())
	}
	if _, err := os.Stat(filepath.Dir(file)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the secret files' directory is still there: %v", err)
	}
	if strings.Contains(runLogs.String(), v.value) {
		t.Fatal("ward run's output holds the secret")
	}
}

// TestSecretsDocWalkthrough runs the "Try it" block of docs/secrets.md
// as written and checks what its comments say.
func TestSecretsDocWalkthrough(t *testing.T) {
	need(t, "bash", "sed", "head", "base64")
	block := docBlock(t, "docs/secrets.md", "## Try it")
	dir := t.TempDir()
	text := runWalkthrough(t, dir, block)
	for _, want := range []string{
		"applied: version 1 (was 0)\n",
		"orders/db/password version 1\n",
		"orders: started with its password\n",
		"secret_denied",
		"catalog: not started\n",
		"catalog: refused\n",
		"value on argv: refused\n",
		"spiffe://example.org/user/admin", // versions: who wrote it
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(text, "catalog: started") {
		t.Error("catalog's app was started")
	}
	value, err := os.ReadFile(filepath.Join(dir, "db-password.txt"))
	if err != nil || len(value) < 16 {
		t.Fatalf("db-password.txt: %v", err)
	}
	if strings.Contains(text, string(value)) {
		t.Error("the walk-through's output holds the secret")
	}
	if files := filesHolding(t, filepath.Join(dir, "ward-data"), string(value)); len(files) > 0 {
		t.Errorf("files of the data directory hold the secret: %v", files)
	}
}

// waitContent waits until the file at path holds want.
func waitContent(t *testing.T, path, want string) {
	t.Helper()
	var data []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		data, _ = os.ReadFile(path)
		if string(data) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %q", filepath.Base(path), data, want)
		}
	}
}

// TestRunWatchFollowsNewVersions: with --watch, a new version of a
// secret restarts an app that has it in its environment, and rewrites
// the file and signals an app that reads it from a file.
func TestRunWatchFollowsNewVersions(t *testing.T) {
	need(t, "sh")
	v := newVaultSetup(t)
	rotate := func(value string) {
		t.Helper()
		cmd := exec.Command(wardBin, "secret", "rotate", "orders/db/password", "--data-dir", v.srv.dataDir)
		cmd.Stdin = strings.NewReader(value)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("secret rotate: %v\n%s", err, out)
		}
	}
	for _, tt := range []struct {
		name, secret, app string
		extra             []string
	}{
		{"restart", " DB_PASSWORD=orders/db/password",
			`trap 'exit 0' TERM; printf '%s\n' "$DB_PASSWORD" >> seen; while :; do sleep 0.05; done`, nil},
		{"signal", "-file DB_PASSWORD=orders/db/password",
			`trap 'exit 0' TERM; trap '{ cat "$DB_PASSWORD"; echo; } >> seen' HUP; { cat "$DB_PASSWORD"; echo; } >> seen; while :; do sleep 0.05; done`,
			[]string{"--watch-signal", "HUP"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seen := filepath.Join(v.dir, "seen")
			os.Remove(seen)
			args := append(v.runArgs("orders"+tt.name, tt.secret), "--watch", "--watch-interval", "200ms")
			args = append(append(args, tt.extra...), "--", "sh", "-c", tt.app)
			// orders<name> reads orders' secrets too.
			policy := strings.Replace(secretsPolicy, "[svc/orders]", "[svc/orders, svc/orders"+tt.name+"]", 1)
			if err := os.WriteFile(filepath.Join(v.dir, "policy.yaml"), []byte(policy), 0o644); err != nil {
				t.Fatal(err)
			}
			v.ward("apply", "-f", "policy.yaml")
			if _, err := os.Stat(seen); err == nil {
				t.Fatal("seen exists before the app started")
			}
			run := exec.Command(wardBin, args...)
			run.Dir = v.dir
			var logs bytes.Buffer
			run.Stdout, run.Stderr = &logs, &logs
			if err := run.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("ward run:\n%s", logs.String())
				}
			}()
			old := v.value
			waitContent(t, seen, old+"\n")
			v.value = "new-" + tt.name + "-" + old
			rotate(v.value)
			waitContent(t, seen, old+"\n"+v.value+"\n")
			if err := run.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := run.Wait(); err != nil {
				t.Fatalf("ward run after SIGTERM: %v, want the app's status 0", err)
			}
			if strings.Contains(logs.String(), v.value) || strings.Contains(logs.String(), old) {
				t.Fatal("ward run's output holds a secret")
			}
		})
	}
}

// TestRunRenewsAKeptSVIDPastHalfLife: `ward run` started again after its
// SVID passed half its life renews it, without a join token, before it
// reads its secrets.
func TestRunRenewsAKeptSVIDPastHalfLife(t *testing.T) {
	need(t, "true")
	dir := t.TempDir()
	// SVIDs of 40s, backdated 30s by the CA: half-life 5s after issuance.
	s := &serverProc{t: t, dataDir: filepath.Join(dir, "data"), logs: new(lockedBuffer)}
	s.args = []string{"server", "--data-dir", s.dataDir, "--trust-domain", "example.org", "--listen", "127.0.0.1:0", "--public-listen", "127.0.0.1:0", "--svid-ttl", "40s"}
	t.Cleanup(s.stop)
	s.start()
	v := &vaultSetup{t: t, srv: s, dir: t.TempDir(), value: "renewal-test-value"}
	var info struct{ Server string }
	data, _ := os.ReadFile(filepath.Join(s.dataDir, "client.json"))
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	v.server = info.Server
	if err := os.WriteFile(filepath.Join(v.dir, "policy.yaml"), []byte(secretsPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	v.ward("apply", "-f", "policy.yaml")
	put := exec.Command(wardBin, "secret", "put", "orders/db/password", "--data-dir", s.dataDir)
	put.Stdin = strings.NewReader(v.value)
	if out, err := put.CombinedOutput(); err != nil {
		t.Fatalf("secret put: %v\n%s", err, out)
	}
	args := v.runArgs("orders", " DB_PASSWORD=orders/db/password")
	if out, err := ward(t, v.dir, append(args, "--", "true")...); err != nil {
		t.Fatalf("first ward run: %v\n%s", err, out)
	}
	svidFile := filepath.Join(v.dir, "orders-id", "svid.pem")
	first, err := os.ReadFile(svidFile)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // let the SVID pass its half-life
	var noToken []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--token" {
			i++
			continue
		}
		noToken = append(noToken, args[i])
	}
	if out, err := ward(t, v.dir, append(noToken, "--", "true")...); err != nil {
		t.Fatalf("ward run on the kept SVID: %v\n%s", err, out)
	}
	second, err := os.ReadFile(svidFile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, second) {
		t.Fatal("the kept SVID past its half-life was not renewed")
	}
}
