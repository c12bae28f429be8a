// Package e2e runs the real ward binary as a user would.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/ratelimit/redistest"
)

var wardBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ward-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wardBin = filepath.Join(dir, "ward")
	build := exec.Command("go", "build", "-o", wardBin, "./cmd/ward")
	build.Dir = repoRoot()
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ward:", err)
		os.Exit(1)
	}
	code := redistest.Wrap(m).Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// readmeBlock returns the first ```sh block after the heading that starts with heading.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	return docBlock(t, "README.md", heading)
}

// docBlock returns the first ```sh block after heading in the file at path
// (relative to the repository root).
func docBlock(t *testing.T, path, heading string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(), path))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "\n"+heading)
	if !ok {
		t.Fatalf("%s has no heading %q", path, heading)
	}
	_, after, ok = strings.Cut(after, "```sh\n")
	if !ok {
		t.Fatalf("no sh block after %q", heading)
	}
	block, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatal("unterminated code block")
	}
	return block
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the test command installs it (scripts/test)", tool)
		}
	}
}

// TestREADMEWalkthrough runs the README's CLI walk-through as written, with
// the freshly built binary in place of `go build`.
func TestREADMEWalkthrough(t *testing.T) {
	need(t, "openssl", "curl", "csplit", "bash")
	block := readmeBlock(t, "## CLI walk-through")
	const build = "go build -o ward ./cmd/ward"
	if !strings.Contains(block, build) {
		t.Fatalf("walk-through no longer starts with %q", build)
	}
	dir := t.TempDir()
	text := runWalkthrough(t, dir, block)
	for _, want := range []string{
		"spiffe://example.org/svc/orders\nserial ", // enroll
		"IDENTITY",            // cert list header
		"part00: OK",          // openssl verify before revocation
		"revoked",             // cert revoke output
		"certificate revoked", // openssl verify -crl_check after revocation
		"Response verify OK",  // OCSP signature
		"part00: revoked",     // OCSP status
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, f := range []string{"orders/key.pem", "ward-data/kek", "ward-data/operator/admin.pem", "ward-data/ward.db"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}

// runWalkthrough runs a documented shell block in dir with the freshly
// built binary in place of its `go build`, stopping what it started in the
// background, and returns its output.
func runWalkthrough(t *testing.T, dir, block string) string {
	t.Helper()
	const build = "go build -o ward ./cmd/ward"
	script := "set -u\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + strings.Replace(block, build, "cp \"$WARD_BIN\" ward", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WARD_BIN="+wardBin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	t.Logf("walk-through output:\n%s", text)
	if err != nil {
		t.Fatalf("walk-through failed: %v", err)
	}
	return text
}

func ward(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wardBin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestServerRefusesBadStore: a corrupt store file stops the server with a
// clear error and is left as it was.
func TestServerRefusesBadStore(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte("this is not a database "), 400)
	db := filepath.Join(data, "ward.db")
	if err := os.WriteFile(db, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := ward(t, dir, "server", "--data-dir", data, "--trust-domain", "example.org", "--listen", "127.0.0.1:0", "--public-listen", "127.0.0.1:0")
	if err == nil {
		t.Fatalf("server started on a corrupt store:\n%s", out)
	}
	if !strings.Contains(out, "ward.db") || !strings.Contains(strings.ToLower(out), "not a valid") {
		t.Errorf("unclear error:\n%s", out)
	}
	after, _ := os.ReadFile(db)
	if !bytes.Equal(after, garbage) {
		t.Error("corrupt store file was modified")
	}
}

// TestCLIErrors: bad commands get a clear error and a non-zero exit.
func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"token", "create"}, `required flag(s) "id" not set`},
		{[]string{"token", "create", "--id", "spiffe://example.org/svc/a"}, "say where the server is"},
		{[]string{"cert", "revoke"}, "give a serial or --id"},
		{[]string{"server", "--data-dir", filepath.Join(dir, "d"), "--listen", "127.0.0.1:0", "--public-listen", "127.0.0.1:0"}, "--trust-domain is required"},
		{[]string{"server", "--data-dir", filepath.Join(dir, "e"), "--trust-domain", "Not A Domain!"}, "trust domain"},
		{[]string{"identity", "enroll"}, "--server, --bundle, --token and --out are required"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"cert", "list", "--log-level", "loud"}, `--log-level "loud": use debug, info, warn or error`},
		{[]string{"sidecar", "--service", "a"}, "--service, --server and --bundle are required"},
		{[]string{"sidecar", "--service", "a", "--server", "https://127.0.0.1:1", "--bundle", "b.pem", "--body-budget", "1MB"}, `--body-budget: invalid size "1MB"`},
		{[]string{"sidecar", "--service", "a", "--server", "https://127.0.0.1:1", "--bundle", "b.pem", "--body-buffer", "2MiB", "--body-budget", "1MiB"}, "--body-buffer 2MiB is larger than --body-budget 1MiB"},
		{[]string{"gateway", "--server", "https://127.0.0.1:1", "--bundle", "b.pem", "--tls-ward-ca", "--max-requests-per-source", "0"}, "--max-requests-per-source: must be at least 1"},
		{[]string{"gateway", "--server", "https://127.0.0.1:1", "--bundle", "b.pem", "--tls-ward-ca", "--body-grace", "0s"}, "--body-grace: must be positive"},
	}
	for _, tt := range tests {
		out, err := ward(t, dir, tt.args...)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("ward %v: err=%v, output lacks %q:\n%s", tt.args, err, tt.want, out)
		}
	}
}

// startServer runs `ward server` on free ports and waits until it is ready.
func startServer(t *testing.T) (dataDir string) {
	t.Helper()
	return startServerProc(t, "127.0.0.1:0", "127.0.0.1:0").dataDir
}

// serverProc is a `ward server` process that a test can stop and start
// again on the same data directory and addresses.
type serverProc struct {
	t       *testing.T
	dataDir string
	args    []string
	cmd     *exec.Cmd
	logs    *lockedBuffer // written by the process's output copier, read by the test
}

// startServerProc runs `ward server` listening on listen and public and
// waits until it is ready; it is stopped when the test ends.
func startServerProc(t *testing.T, listen, public string) *serverProc {
	t.Helper()
	dir := t.TempDir()
	s := &serverProc{t: t, dataDir: filepath.Join(dir, "data"), logs: new(lockedBuffer)}
	s.args = []string{"server", "--data-dir", s.dataDir, "--trust-domain", "example.org", "--listen", listen, "--public-listen", public}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	s.start()
	return s
}

// start runs the server and waits until it is ready.
func (s *serverProc) start() {
	s.t.Helper()
	_ = os.Remove(filepath.Join(s.dataDir, "client.json")) // written anew when ready
	s.cmd = exec.Command(wardBin, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(s.dataDir, "client.json")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("server not ready:\n%s", s.logs.String())
		}
	}
}

// stop ends the server (SIGTERM, then SIGKILL after 10s) and waits.
func (s *serverProc) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

func TestCARotationCLI(t *testing.T) {
	data := startServer(t)
	dir := filepath.Dir(data)
	run := func(args ...string) string {
		t.Helper()
		out, err := ward(t, dir, append(args, "--data-dir", data)...)
		if err != nil {
			t.Fatalf("ward %v: %v\n%s", args, err, out)
		}
		return out
	}
	show := run("ca", "show")
	if strings.Count(show, "intermediate") != 1 || !strings.Contains(show, "root") {
		t.Fatalf("ca show:\n%s", show)
	}
	oldID := ""
	for _, line := range strings.Split(show, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "intermediate" {
			oldID = f[0]
		}
	}
	newID := strings.TrimSpace(strings.Split(run("ca", "rotate"), "\n")[0])
	show = run("ca", "show")
	if !strings.Contains(show, oldID) || !strings.Contains(show, newID) || !strings.Contains(show, "retiring") {
		t.Fatalf("after rotate:\n%s", show)
	}
	if out, err := ward(t, dir, "ca", "retire", newID, "--data-dir", data); err == nil || !strings.Contains(out, "cannot be retired") {
		t.Fatalf("retiring the active intermediate: %v\n%s", err, out)
	}
	// The server's own certificate and the operator credential still come
	// from the old intermediate: retiring it now would cut them off.
	if out, err := ward(t, dir, "ca", "retire", oldID, "--data-dir", data); err == nil || !strings.Contains(out, "still valid") {
		t.Fatalf("retiring an intermediate in use: %v\n%s", err, out)
	}
	run("ca", "retire", oldID, "--force")
	// The server replaces its credentials from the new intermediate, so the
	// operator is not locked out for long.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := ward(t, dir, "ca", "show", "--data-dir", data)
		if err == nil {
			if !strings.Contains(out, "retired") {
				t.Fatalf("after retire:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("operator locked out after retiring the old intermediate:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
