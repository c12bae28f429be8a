package vault_test

import (
	"strings"
	"testing"

	"github.com/wardsec/ward/internal/vault"
)

// FuzzCheckPath: whatever CheckPath accepts is a clean, relative path of
// allowed bytes that matches itself as a pattern and is owned by its
// first segment; CheckPattern accepts every valid path.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"orders/db/password", "a", "../x", "orders//x", "orders/./x", "/abs", "x/", "A/b", "a/b\x00", "a/*", "a/**", strings.Repeat("a/", 10) + "a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if vault.CheckPath(p) != nil {
			return
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("CheckPath(%q) accepted segment %q", p, seg)
			}
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-_./", c) >= 0) {
				t.Fatalf("CheckPath(%q) accepted byte %q", p, c)
			}
		}
		if err := vault.CheckPattern(p); err != nil {
			t.Fatalf("CheckPattern(%q) refused a valid path: %v", p, err)
		}
		if !vault.MatchPattern(p, p) {
			t.Fatalf("%q does not match itself", p)
		}
		if owner := vault.Owner(p); !strings.HasPrefix(p, owner) || strings.Contains(owner, "/") {
			t.Fatalf("Owner(%q) = %q", p, owner)
		}
	})
}
