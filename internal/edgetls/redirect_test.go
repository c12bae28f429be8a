package edgetls

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

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
			RedirectHandler(tt.httpsAddr).ServeHTTP(w, r)
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
	srv := httptest.NewServer(RedirectHandler(":443"))
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
			RedirectHandler(addr)
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
