package edgetls

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCachedObtain: the certificate obtained is cached 0600 and answers
// the next start while the CA is unreachable; a cached certificate that
// no longer fits (other names, expired, readable by others, damaged) is
// not used.
func TestCachedObtain(t *testing.T) {
	ca := newRootCA(t, "cache test CA")
	issuer := &fakeIssuer{t: t, ca: ca, life: time.Hour}
	path := filepath.Join(t.TempDir(), "edge-cert.pem")
	log, _ := newTestLogger(t)

	first, err := CachedObtain(path, []string{"localhost"}, issuer.obtain, log)(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkMode(t, path, 0o600)

	// A restart with the CA down: the cached certificate, without a call.
	issuer.failing.Store(true)
	calls := issuer.calls.Load()
	obtain := CachedObtain(path, []string{"localhost"}, issuer.obtain, log)
	got, err := obtain(t.Context())
	if err != nil || !got.Leaf.Equal(first.Leaf) {
		t.Fatalf("restart with the CA down: %v, %v; want the cached certificate", got, err)
	}
	if issuer.calls.Load() != calls {
		t.Error("the CA was asked although the cache was good")
	}
	// Renewals go to the CA, not the cache.
	if _, err := obtain(t.Context()); err == nil || !strings.Contains(err.Error(), "CA unreachable") {
		t.Errorf("renewal with the CA down: %v, want the CA's error", err)
	}

	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	expired := ca.issue(t, leafOpts{notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
	for _, tt := range []struct {
		name  string
		names []string
		setup func()
		want  string // in the log
	}{
		{"other names", []string{"api.example.com"}, func() {}, "does not cover api.example.com"},
		{"expired", []string{"localhost"}, func() {
			if err := saveCertFile(path, expired); err != nil {
				t.Fatal(err)
			}
		}, "expired"},
		{"readable by others", []string{"localhost"}, func() {
			if err := os.WriteFile(path, good, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "accessible by others"},
		{"damaged", []string{"localhost"}, func() {
			if err := os.WriteFile(path, good[:len(good)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}, "edge-cert.pem: tls: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
			tt.setup()
			log, logs := newTestLogger(t)
			if _, err := CachedObtain(path, tt.names, issuer.obtain, log)(t.Context()); err == nil || !strings.Contains(err.Error(), "CA unreachable") {
				t.Errorf("start on an unusable cache with the CA down: %v, want the CA's error", err)
			}
			if !strings.Contains(logs.String(), tt.want) {
				t.Errorf("log lacks %q:\n%s", tt.want, logs)
			}
		})
	}

	// With the CA back, a fresh certificate replaces the unusable cache.
	issuer.failing.Store(false)
	fresh, err := CachedObtain(path, []string{"localhost"}, issuer.obtain, log)(t.Context())
	if err != nil || fresh.Leaf.Equal(first.Leaf) {
		t.Fatalf("with the CA back: %v, want a new certificate", err)
	}
	checkMode(t, path, 0o600)
}
