package edgetls

import (
	"crypto/ecdsa"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewACMESourceChecksConfig(t *testing.T) {
	ok := func() ACMEConfig {
		return ACMEConfig{DirectoryURL: "https://acme.example/dir", Domains: []string{"api.example.com"}, CacheDir: filepath.Join(t.TempDir(), "acme")}
	}
	tests := []struct {
		name string
		mod  func(*ACMEConfig)
		want string
	}{
		{"plain http directory", func(c *ACMEConfig) { c.DirectoryURL = "http://acme.example/dir" }, "https://"},
		{"no directory", func(c *ACMEConfig) { c.DirectoryURL = "" }, "https://"},
		{"no domains", func(c *ACMEConfig) { c.Domains = nil }, "at least one domain"},
		{"wildcard", func(c *ACMEConfig) { c.Domains = []string{"*.example.com"} }, "dns-01"},
		{"IP address", func(c *ACMEConfig) { c.Domains = []string{"192.0.2.1"} }, "fully qualified"},
		{"single label", func(c *ACMEConfig) { c.Domains = []string{"localhost"} }, "fully qualified"},
		{"bad name", func(c *ACMEConfig) { c.Domains = []string{"a_b.example.com"} }, "fully qualified"},
		{"duplicate", func(c *ACMEConfig) { c.Domains = []string{"a.example.com", "A.example.com."} }, "twice"},
		{"bad email", func(c *ACMEConfig) { c.Email = "ops" }, "not an address"},
		{"no cache", func(c *ACMEConfig) { c.CacheDir = "" }, "cache directory"},
		{"negative renew-before", func(c *ACMEConfig) { c.RenewBefore = -1 }, "negative"},
		{"client and roots", func(c *ACMEConfig) { c.HTTPClient = http.DefaultClient; c.RootCAs = newRootCA(t, "r").pool() }, "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok()
			tt.mod(&cfg)
			_, err := NewACMESource(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewACMESource: %v, want an error with %q", err, tt.want)
			}
		})
	}

	// A good config prepares the cache: 0700, an account key 0600 that a
	// second source reuses.
	cfg := ok()
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := NewACMESource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkMode(t, cfg.CacheDir, 0o700)
	keys, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "account-*.key"))
	if len(keys) != 1 {
		t.Fatalf("account keys %q, want one", keys)
	}
	checkMode(t, keys[0], 0o600)
	b, err := NewACMESource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !a.client.Key.Public().(*ecdsa.PublicKey).Equal(b.client.Key.Public()) {
		t.Error("a second source made a new account key")
	}
	// Another directory (staging then production) gets its own account.
	cfg.DirectoryURL = "https://other.example/dir"
	if _, err := NewACMESource(cfg); err != nil {
		t.Fatal(err)
	}
	if keys, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "account-*.key")); len(keys) != 2 {
		t.Errorf("account keys %q, want one per directory", keys)
	}
	if err := os.WriteFile(keys[0], []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.DirectoryURL = "https://acme.example/dir"
	if _, err := NewACMESource(cfg); err == nil || !strings.Contains(err.Error(), "account key") {
		t.Errorf("corrupt account key: %v, want an error naming it", err)
	}
}

func TestACMEChallengeHandlers(t *testing.T) {
	a, err := NewACMESource(ACMEConfig{DirectoryURL: "https://acme.example/dir", Domains: []string{"api.example.com"}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if protos := ServerConfig(a, nil).NextProtos; strings.Join(protos, ",") != "h2,http/1.1,acme-tls/1" {
		t.Errorf("NextProtos with ACME: %q", protos)
	}
	a.httpToken["tok"] = "tok.thumbprint"
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := a.HTTPHandler(fallback)
	for _, tt := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/.well-known/acme-challenge/tok", 200, "tok.thumbprint"},
		{"GET", "/.well-known/acme-challenge/other", 404, ""},
		{"POST", "/.well-known/acme-challenge/tok", 405, ""},
		{"GET", "/", http.StatusTeapot, ""},
		{"GET", "/.well-known/other", http.StatusTeapot, ""},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tt.method, "http://api.example.com"+tt.path, nil))
		if w.Code != tt.code || (tt.body != "" && w.Body.String() != tt.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.path, w.Code, w.Body.String(), tt.code, tt.body)
		}
	}

	// tls-alpn-01: the challenge certificate only to an acme-tls/1-only
	// hello for a pending name; other handshakes get the real one (none
	// yet here).
	chal := newRootCA(t, "r").issue(t, leafOpts{})
	a.alpnCerts["api.example.com"] = chal
	if c, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "API.example.com", SupportedProtos: []string{acmeALPN}}); err != nil || c != chal {
		t.Errorf("acme-tls/1 hello: %v, want the challenge certificate", err)
	}
	if _, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com", SupportedProtos: []string{acmeALPN}}); err == nil {
		t.Error("acme-tls/1 hello for a name without challenge got a certificate")
	}
	if c, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "api.example.com", SupportedProtos: []string{"h2", acmeALPN}}); err == nil || c == chal {
		t.Error("an ordinary hello got the challenge certificate")
	}
}
