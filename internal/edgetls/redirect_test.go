package edgetls

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fixedCerts is a CertSource that serves one certificate (nil: none).
type fixedCerts struct{ c *tls.Certificate }

func (f fixedCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if f.c == nil {
		return nil, errors.New("no certificate yet")
	}
	return f.c, nil
}

func (fixedCerts) Run(context.Context) error { return nil }

// servedNames is a source whose certificate covers what the redirect
// tests ask for.
func servedNames(t *testing.T) CertSource {
	t.Helper()
	return fixedCerts{newRootCA(t, "redirect").issue(t, leafOpts{
		names: []string{"example.com", "*.shop.example"},
		ips:   []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	})}
}

// TestRedirectOnlyToServedNames: issue 12 finding 11. The plain-HTTP
// listener redirects only to names the gateway's certificate covers, never
// to whatever well-formed Host a client sent.
func TestRedirectOnlyToServedNames(t *testing.T) {
	certs := servedNames(t)
	for host, want := range map[string]string{
		"example.com":         "https://example.com/p",
		"a.shop.example:80":   "https://a.shop.example/p",
		"127.0.0.1":           "https://127.0.0.1/p",
		"evil.example":        "",
		"example.com.evil.io": "",
		"shop.example":        "",
		"a.b.shop.example":    "",
		"10.0.0.1":            "",
	} {
		r := httptest.NewRequest("GET", "http://placeholder/p", nil)
		r.Host = host
		w := httptest.NewRecorder()
		RedirectHandler(":443", certs).ServeHTTP(w, r)
		switch got := w.Header().Get("Location"); {
		case want == "" && (w.Code != http.StatusBadRequest || got != ""):
			t.Errorf("Host %s: %d to %q, want 400 and no redirect", host, w.Code, got)
		case want != "" && (w.Code != http.StatusPermanentRedirect || got != want):
			t.Errorf("Host %s: %d to %q, want 308 to %q", host, w.Code, got, want)
		}
	}
	// Without a certificate yet, nothing is served over HTTPS: no redirect.
	r := httptest.NewRequest("GET", "http://example.com/p", nil)
	w := httptest.NewRecorder()
	RedirectHandler(":443", fixedCerts{}).ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest {
		t.Errorf("no certificate: %d, want 400", w.Code)
	}
}

func TestRedirectHandler(t *testing.T) {
	tests := []struct {
		name, httpsAddr, method, target, host string
		code                                  int
		location                              string
	}{
		{"default port", ":443", "GET", "/a/b?x=1&y=%20", "example.com", 308, "https://example.com/a/b?x=1&y=%20"},
		{"host with port 80", ":443", "GET", "/", "Example.COM:80", 308, "https://example.com/"},
		{"other https port", "0.0.0.0:8443", "GET", "/p", "example.com", 308, "https://example.com:8443/p"},
		{"POST keeps method (308)", ":443", "POST", "/login", "example.com", 308, "https://example.com/login"},
		{"escaped path kept", ":443", "GET", "/a%2Fb/c%3F", "example.com", 308, "https://example.com/a%2Fb/c%3F"},
		{"double slash stays a path", ":443", "GET", "//evil.example/x", "example.com", 308, "https://example.com//evil.example/x"},
		{"trailing dot", ":443", "GET", "/", "example.com.", 308, "https://example.com/"},
		{"IPv4", ":8443", "GET", "/", "127.0.0.1:8080", 308, "https://127.0.0.1:8443/"},
		{"IPv6", ":8443", "GET", "/", "[::1]:8080", 308, "https://[::1]:8443/"},
		{"IPv6 default port", ":443", "GET", "/", "[::1]", 308, "https://[::1]/"},
		{"empty host", ":443", "GET", "/", "", 400, ""},
		{"space in host", ":443", "GET", "/", "exa mple.com", 400, ""},
		{"empty label", ":443", "GET", "/", "a..b", 400, ""},
		{"markup", ":443", "GET", "/", "<script>", 400, ""},
		{"userinfo", ":443", "GET", "/", "user@example.com", 400, ""},
		{"path in host", ":443", "GET", "/", "evil.com/x", 400, ""},
		{"bad port", ":443", "GET", "/", "example.com:99999", 400, ""},
		{"label too long", ":443", "GET", "/", strings.Repeat("a", 64) + ".com", 400, ""},
		{"name too long", ":443", "GET", "/", strings.Repeat("abcdefghi.", 26) + "com", 400, ""},
		{"hyphen first", ":443", "GET", "/", "-x.example.com", 400, ""},
		{"IPv6 zone", ":443", "GET", "/", "[fe80::1%25eth0]", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://placeholder"+tt.target, strings.NewReader("body"))
			r.Host = tt.host
			w := httptest.NewRecorder()
			RedirectHandler(tt.httpsAddr, servedNames(t)).ServeHTTP(w, r)
			if w.Code != tt.code {
				t.Fatalf("code %d, want %d (body %q)", w.Code, tt.code, w.Body.String())
			}
			if got := w.Header().Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
		})
	}
}

func TestRedirectHandlerServesNothingElse(t *testing.T) {
	// Over a real server: whatever the path, a redirect and no content.
	srv := httptest.NewServer(RedirectHandler(":443", servedNames(t)))
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/", "/metrics", "/.well-known/acme-challenge/x", "/admin?a=b"} {
		resp, err := client.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := "https://127.0.0.1" + p
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("%s: %d %q, want 308 %q", p, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
}

func TestRedirectHandlerBadAddressPanics(t *testing.T) {
	for _, addr := range []string{"", "example.com", ":https", ":0", ":70000"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RedirectHandler(%q) did not panic", addr)
				}
			}()
			RedirectHandler(addr, servedNames(t))
		}()
	}
}

func TestHSTS(t *testing.T) {
	h := HSTS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	r := httptest.NewRequest("GET", "https://example.com/", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("Strict-Transport-Security"); got != "max-age=63072000; includeSubDomains" {
		t.Errorf("over TLS: Strict-Transport-Security %q", got)
	}
	if w.Code != http.StatusTeapot {
		t.Errorf("next handler not called: %d", w.Code)
	}
	r = httptest.NewRequest("GET", "http://example.com/", nil)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("Strict-Transport-Security"); got != "" {
		t.Errorf("over plain HTTP: Strict-Transport-Security %q, want none (RFC 6797 8.1)", got)
	}
}
