package edgetls

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testsslFinding is one line of testssl.sh's JSON output.
type testsslFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// collectFindings walks testssl's pretty JSON and returns every object
// that has an id and a severity, wherever it sits.
func collectFindings(v any, out *[]testsslFinding) {
	switch v := v.(type) {
	case map[string]any:
		id, okID := v["id"].(string)
		sev, okSev := v["severity"].(string)
		if okID && okSev {
			f, _ := v["finding"].(string)
			*out = append(*out, testsslFinding{ID: id, Severity: sev, Finding: f})
		}
		for _, e := range v {
			collectFindings(e, out)
		}
	case []any:
		for _, e := range v {
			collectFindings(e, out)
		}
	}
}

// TestTestSSL serves HTTPS the way the edge does (ServerConfig, HSTS, a
// certificate from a FileSource with a root → intermediate → leaf chain)
// and runs Debian's testssl.sh against it: any finding rated MEDIUM, HIGH
// or CRITICAL fails the test. No finding is filtered out.
func TestTestSSL(t *testing.T) {
	testssl := requireBinary(t, "testssl", "testssl.sh")
	began := time.Now()
	dir := t.TempDir()
	root := newRootCA(t, "Ward test root")
	ica := root.intermediate(t, "Ward test intermediate")
	certFile, keyFile := writePair(t, dir, ica.issue(t, leafOpts{chain: []*testCA{ica}}))
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, root.certPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := NewFileSource(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: HSTS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The application behind the edge. testssl rates a response
			// without any security header (nosniff, X-Frame-Options,
			// CSP...) MEDIUM "security_headers": that is the
			// application's part, and every API should send nosniff.
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "ward edge\n")
		})),
		TLSConfig:         ServerConfig(src, nil),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          stdlog.New(io.Discard, "", 0), // testssl's probes fail handshakes on purpose
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()

	// testssl is a shell script that forks for every probe: about 2
	// minutes of CPU, 3 minutes on a 2-core machine shared with other
	// builds. Running it in parallel parts costs more CPU and gained
	// nothing on a busy machine. The bound leaves room for a busier one,
	// within go test's own deadline.
	limit := 9 * time.Minute
	if d, ok := t.Deadline(); ok && time.Until(d)-30*time.Second < limit {
		limit = time.Until(d) - 30*time.Second
	}
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	checks := []string{
		"-p", // protocols
		"-s", // cipher categories
		"-f", // forward secrecy
		"-U", // vulnerabilities
		"-S", // certificate and server defaults
		"-P", // server preferences
		"-h", // HTTP headers
	}
	r := runTestSSL(ctx, testssl, filepath.Join(dir, "testssl.json"), rootFile, ln.Addr().String(), checks)
	if r.err != nil {
		t.Fatalf("testssl: %v\n%s", r.err, r.console)
	}
	findings := r.findings
	byID := map[string]testsslFinding{}
	var bad, summary []string
	counts := map[string]int{}
	for _, f := range findings {
		byID[f.ID] = f
		counts[f.Severity]++
		switch f.Severity {
		case "MEDIUM", "HIGH", "CRITICAL":
			bad = append(bad, fmt.Sprintf("%s %s: %s", f.Severity, f.ID, f.Finding))
		case "LOW", "WARN", "FATAL":
			summary = append(summary, fmt.Sprintf("%s %s: %s", f.Severity, f.ID, f.Finding))
		}
	}
	t.Logf("testssl: %d findings %v in %v", len(findings), counts, time.Since(began).Round(time.Second))
	for _, s := range summary {
		t.Log(s)
	}
	if len(bad) > 0 {
		t.Errorf("testssl rates %d findings MEDIUM or worse:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	if counts["FATAL"] > 0 {
		t.Error("testssl could not complete its scan (FATAL findings above)")
	}
	// The scan really looked at the server: the facts it must have seen.
	for id, want := range map[string]string{
		"TLS1_3":              "offered",
		"TLS1_2":              "offered",
		"TLS1_1":              "not offered",
		"TLS1":                "not offered",
		"SSLv3":               "not offered",
		"HSTS_time":           "730 days",
		"cert_chain_of_trust": "passed",
	} {
		f, ok := byID[id]
		if !ok {
			t.Errorf("testssl reported nothing for %s", id)
			continue
		}
		if !strings.Contains(f.Finding, want) {
			t.Errorf("testssl %s: %q, want %q", id, f.Finding, want)
		}
	}
	if len(findings) < 50 || !slices.ContainsFunc(findings, func(f testsslFinding) bool { return strings.HasPrefix(f.ID, "cipher") }) {
		t.Errorf("testssl reported only %d findings, no cipher: the scan did not run", len(findings))
	}
}

// testsslRun is the outcome of one testssl process.
type testsslRun struct {
	checks   []string
	findings []testsslFinding
	console  []byte
	took     time.Duration
	err      error
}

// runTestSSL runs testssl's checks against addr, offline, and returns the
// findings of its JSON report.
func runTestSSL(ctx context.Context, testssl, out, rootFile, addr string, checks []string) testsslRun {
	began := time.Now()
	args := []string{
		"--quiet", "--color", "0", "--warnings", "off",
		"--nodns", "none", // the target is an IP: no lookup at all
		"--sneaky", "--connect-timeout", "10", "--openssl-timeout", "10",
		"--add-ca", rootFile, "--jsonfile-pretty", out,
	}
	args = append(append(args, checks...), addr)
	cmd := exec.CommandContext(ctx, testssl, args...)
	cmd.Env = append(os.Environ(), "TERM=dumb")
	cmd.WaitDelay = 5 * time.Second
	console, err := cmd.CombinedOutput()
	r := testsslRun{checks: checks, console: console, took: time.Since(began)}
	if ctx.Err() != nil {
		r.err = fmt.Errorf("did not finish in time (%v)", r.took.Round(time.Second))
		return r
	}
	// The exit status counts findings and ambiguities; the JSON decides.
	data, rerr := os.ReadFile(out)
	if rerr != nil {
		r.err = fmt.Errorf("no JSON report (%v, exit %v)", rerr, err)
		return r
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		r.err = fmt.Errorf("JSON report: %w", err)
		return r
	}
	collectFindings(doc, &r.findings)
	return r
}
