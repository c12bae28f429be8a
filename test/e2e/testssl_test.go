package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
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

// TestTestSSL runs Debian's testssl.sh against a real `ward gateway`
// serving a proper chain from files (root, intermediate, leaf for
// localhost and 127.0.0.1 valid 200 days, with a CRL distribution point,
// as a public CA's would be): any finding rated MEDIUM, HIGH or CRITICAL
// fails the test. No finding is filtered out. (Ward's own CA issues edge
// certificates for a day, which testssl rates HIGH as "expires < 30 days":
// right for a public site, so public sites take files or ACME.)
func TestTestSSL(t *testing.T) {
	need(t, "testssl")
	testssl, _ := exec.LookPath("testssl")
	began := time.Now()
	e := newEdgeSetup(t)
	certFile, keyFile, rootFile := edgeChain(t, e.dir)
	rootPEM, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	e.roots.AppendCertsFromPEM(rootPEM) // for waitReady's client
	// The scan opens hundreds of connections in a few seconds: the
	// per-source connection limit is raised so that it measures TLS, not
	// flood protection.
	addr := e.startGatewayTLS([]string{"--tls-cert", certFile, "--tls-key", keyFile}, "--conn-rate", "10000/s", "--conn-burst", "10000")
	e.waitReady(addr, e.apiKey("shop", "orders"))

	// testssl is a shell script that forks for every probe: about 2
	// minutes of CPU, 3 minutes on a 2-core machine shared with other
	// builds. The bound leaves room for a busier one, within go test's
	// own deadline.
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
	r := runTestSSL(ctx, testssl, filepath.Join(e.dir, "testssl.json"), rootFile, addr, checks)
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
	// The scan really looked at the gateway: the facts it must have seen.
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

// edgeChain writes a root → intermediate → leaf chain (ECDSA P-256): the
// leaf and intermediate to cert.pem, the leaf's key to key.pem, the root
// to root.pem.
func edgeChain(t *testing.T, dir string) (certFile, keyFile, rootFile string) {
	t.Helper()
	now := time.Now()
	mk := func(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		// 128 random bits, as CAs use (testssl rates short serials LOW).
		if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128)); err != nil {
			t.Fatal(err)
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, key
	}
	ca := func(name string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{Organization: []string{"Ward test"}, CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(3 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	}
	root, rootKey := mk(ca("Ward test root"), nil, nil)
	inter, interKey := mk(ca("Ward test intermediate"), root, rootKey)
	leaf, leafKey := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(200 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Where revocation is published (never fetched here); testssl rates
		// a certificate without CRL or OCSP URI HIGH.
		CRLDistributionPoints: []string{"http://crl.ward.test/edge.crl"}}, inter, interKey)
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, ders ...[]byte) []byte {
		var out []byte
		for _, d := range ders {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
		}
		return out
	}
	certFile, keyFile, rootFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "root.pem")
	for f, data := range map[string][]byte{
		certFile: pemOf("CERTIFICATE", leaf.Raw, inter.Raw),
		keyFile:  pemOf("PRIVATE KEY", keyDER),
		rootFile: pemOf("CERTIFICATE", root.Raw),
	} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, rootFile
}
