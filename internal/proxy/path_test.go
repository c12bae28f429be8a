package proxy

import (
	"net/url"
	"testing"
)

// TestSetPathSendsTheCanonicalPathOnce: what a proxy sends upstream
// (URL.RequestURI) is the canonical path itself, never encoded again.
func TestSetPathSendsTheCanonicalPathOnce(t *testing.T) {
	for _, p := range []string{"/", "/a/b", "/a%20b", "/caf%C3%A9", "/x%22y", "/a+b=c:d@e", "/%25", "/a%3Fb", "/%23x"} {
		u := &url.URL{Scheme: "https", Host: "orders", Path: "/stale", RawPath: "/stale"}
		SetPath(u, p)
		if got := u.RequestURI(); got != p {
			t.Errorf("SetPath(%q): sent as %q", p, got)
		}
		if dec, _ := url.PathUnescape(p); u.Path != dec {
			t.Errorf("SetPath(%q): Path %q, want %q", p, u.Path, dec)
		}
	}
}
