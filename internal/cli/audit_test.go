package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
)

func runWard(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	root := NewRoot(&out, &errw)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errw.String(), err
}

// TestAuditCommands drives ward audit verify, query and export over a
// real log, then tampers with it.
func TestAuditCommands(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dir := filepath.Join(base, "audit")
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPath := filepath.Join(base, "pub.pem")
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := audit.Open(dir, audit.Options{Signer: key, MaxSegmentBytes: 4096, NoCompress: true})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 40 {
		e := audit.Event{Time: t0.Add(time.Duration(i) * time.Minute), Type: "gateway.request", Actor: fmt.Sprintf("spiffe://example.org/svc/c%d", i%4),
			Decision: []string{"allow", "deny"}[i%2], Reason: []string{"", "no_rule"}[i%2], Service: "orders", Source: "192.0.2.1:5555", RequestID: fmt.Sprint("r", i)}
		if _, err := w.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	out, _, err := runWard(t, "audit", "verify", "--dir", dir, "--key", pubPath)
	if err != nil || !strings.HasPrefix(out, "OK ") || !strings.Contains(out, "40 records") {
		t.Fatalf("verify: %v\n%s", err, out)
	}

	out, errOut, err := runWard(t, "audit", "query", "--dir", dir, "--principal", "spiffe://example.org/svc/c1",
		"--decision", "deny", "--since", "2026-03-01T12:05:00Z", "--until", "2026-03-01T12:30:00Z")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// c1 is every 4th record from 1; odd records are denies: i = 5, 9, ..., 29.
	if len(lines) != 1+7 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], "2026-03-01T12:05:00Z  6 ") {
		t.Fatalf("query table:\n%s", out)
	}
	if !strings.Contains(errOut, "7 records") {
		t.Fatalf("query stats: %q", errOut)
	}

	out, _, err = runWard(t, "audit", "query", "--dir", dir, "--reason", "no_rule", "--limit", "2", "--json")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"seq":2,`) || !strings.Contains(out, `"reason":"no_rule"`) {
		t.Fatalf("query --json: %v\n%s", err, out)
	}

	cursor := filepath.Join(base, "cursor")
	out, _, err = runWard(t, "audit", "export", "--dir", dir, "--ecs", "--cursor", cursor)
	if err != nil || strings.Count(out, "\n") != 40 || !strings.Contains(out, `"@timestamp":"2026-03-01T12:00:00Z"`) {
		t.Fatalf("export --ecs: %v\n%.300s", err, out)
	}
	if c, _ := os.ReadFile(cursor); strings.TrimSpace(string(c)) != "40" {
		t.Fatalf("cursor %q", c)
	}
	if out, _, err = runWard(t, "audit", "export", "--dir", dir, "--ecs", "--cursor", cursor); err != nil || out != "" {
		t.Fatalf("second export from the cursor: %v %q", err, out)
	}

	if _, _, err := runWard(t, "audit", "query", "--dir", dir, "--since", "yesterday"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Fatalf("bad --since: %v", err)
	}

	// Tampering: edit a record by hand.
	seg := filepath.Join(dir, "seg-0000000000000001.wal")
	data, _ := os.ReadFile(seg)
	if err := os.WriteFile(seg, bytes.Replace(data, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = runWard(t, "audit", "verify", "--dir", dir, "--key", pubPath)
	if err == nil || !strings.Contains(err.Error(), "failed verification") || !strings.Contains(out, "TAMPERED modified: segment 1 line 3") {
		t.Fatalf("verify after edit: %v\n%s", err, out)
	}
}
