package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminCreateWritesCredential0600 is issue 19 item 8: `ward admin
// create` writes the operator's credential, a private key among it, for
// its owner alone (mode 0600), whatever the umask, and says so.
func TestAdminCreateWritesCredential0600(t *testing.T) {
	_, dir := startServer(t)
	out := filepath.Join(t.TempDir(), "dana.pem")
	stdout, stderr, err := ward(t, "--data-dir", dir, "admin", "create", "dana", "--role", "developer", "--services", "orders", "--out", out)
	if err != nil {
		t.Fatalf("admin create: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "spiffe://example.org/user/dana  developer  orders") || !strings.Contains(stderr, "(mode 0600)") {
		t.Errorf("admin create printed %q and %q", stdout, stderr)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credential %s has mode %v, want 0600", out, fi.Mode().Perm())
	}
	data, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(data), "PRIVATE KEY") || !strings.Contains(string(data), "CERTIFICATE") {
		t.Errorf("the credential holds no certificate and key: %v", err)
	}
	// An existing file is never overwritten (nor its mode changed).
	if _, _, err := ward(t, "--data-dir", dir, "admin", "create", "dana", "--role", "developer", "--out", out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("admin create over an existing file: %v", err)
	}
}
