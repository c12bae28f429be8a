package policy

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		raw, want string
		err       error // nil when want is the result
	}{
		// Canonical paths are kept.
		{"/", "/", nil},
		{"/orders/1", "/orders/1", nil},
		{"/orders/", "/orders/", nil},
		{"/Orders/A", "/Orders/A", nil}, // case-sensitive
		{"/a-b_c.d~e/!$&'()*+,=:@", "/a-b_c.d~e/!$&'()*+,=:@", nil},
		{"/...", "/...", nil},
		{"/a..b/.c", "/a..b/.c", nil},
		// Query and empty path.
		{"", "/", nil},
		{"/orders?x=/../admin", "/orders", nil},
		{"/?", "/", nil},
		// One spelling per character.
		{"/%7Ea%2d%41%2e", "/~a-A.", nil},
		{"/a%20b", "/a%20b", nil},
		{"/a b", "/a%20b", nil},
		{"/%3a%40%2B", "/:@+", nil},
		{"/%3F%23%25", "/%3F%23%25", nil},
		{"/%c3%a9", "/%C3%A9", nil},
		{"/é", "/%C3%A9", nil},
		{`/a"<>^{|}`, "/a%22%3C%3E%5E%7B%7C%7D", nil},
		{"/100%25", "/100%25", nil},
		// Dot segments and empty segments.
		{"/a/./b", "/a/b", nil},
		{"/a/b/../c", "/a/c", nil},
		{"/a/b/..", "/a/", nil},
		{"/a/b/.", "/a/b/", nil},
		{"/a/%2e%2E/b", "/b", nil},
		{"/a/.%2e/b", "/b", nil},
		{"/a//b", "/a/b", nil},
		{"//a", "/a", nil},
		{"/a//", "/a/", nil},
		{"//", "/", nil},
		{"/a/../b//c", "/b/c", nil},
		{"/..a/b..", "/..a/b..", nil},
		// Refused.
		{"orders", "", errNotAbsolute},
		{"*", "", errNotAbsolute},
		{"http://h/a", "", errNotAbsolute},
		{"/a#b", "", errFragment},
		{"/a%", "", errBadEscape},
		{"/a%2", "", errBadEscape},
		{"/a%zz", "", errBadEscape},
		{"/a%u002e", "", errBadEscape},
		{"/a%2fb", "", errEncodedSlash},
		{"/a%2Fb", "", errEncodedSlash},
		{"/a%5cb", "", errEncodedSlash},
		{`/a\b`, "", errBackslash},
		{"/a;b", "", errSemicolon},
		{"/a;jsessionid=1/b", "", errSemicolon},
		{"/a%3bb", "", errSemicolon},
		{"/a\x00", "", errControl},
		{"/a%00", "", errControl},
		{"/a%0d%0a", "", errControl},
		{"/a\t", "", errControl},
		{"/a%7f", "", errControl},
		{"/%252e%252e/", "", errDoubleEncoded},
		{"/%25%32%65", "", errDoubleEncoded},
		{"/a%252F", "", errDoubleEncoded},
		{"/a\xff", "", errBadUTF8},
		{"/%c0%ae%c0%ae/", "", errBadUTF8}, // overlong '.'
		{"/%c0%af", "", errBadUTF8},        // overlong '/'
		{"/%ed%a0%80", "", errBadUTF8},     // surrogate
		{"/．．/", "", errConfusable},
		{"/%ef%bc%8e%ef%bc%8e/", "", errConfusable},
		{"/a／b", "", errConfusable},
		{"/a＼b", "", errConfusable},
		{"/a‥", "", errConfusable},
		{"/a％2e", "", errConfusable},
		{"/a；b", "", errConfusable},
		{"/a∕b", "", errConfusable},
		{"/a⁄b", "", errConfusable},
		{"/..", "", errAboveRoot},
		{"/a/../..", "", errAboveRoot},
		{"/%2e%2e/a", "", errAboveRoot},
		{"/a//../b", "", errEmptyThenDotDot},
		{"//..", "", errEmptyThenDotDot},
	}
	for _, tt := range tests {
		got, err := NormalizePath(tt.raw)
		if got != tt.want || err != tt.err {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q, %v", tt.raw, got, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, ErrAmbiguousPath) {
			t.Errorf("NormalizePath(%q): %v does not wrap ErrAmbiguousPath", tt.raw, err)
		}
	}
}

func TestNormalizePathAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = NormalizePath("/orders/123/items/") }); n != 0 {
		t.Errorf("NormalizePath of a canonical path allocates %v times", n)
	}
}

// FuzzNormalizePath checks what NormalizePath returns: it is canonical (its
// own normal form, without empty or dot segments, every escape upper-case
// and needed), and it names what the standard library's decoding and
// cleaning of the raw path name.
func FuzzNormalizePath(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizePath(raw)
		if err != nil {
			if got != "" || !errors.Is(err, ErrAmbiguousPath) {
				t.Fatalf("NormalizePath(%q) = %q, %v", raw, got, err)
			}
			return
		}
		if again, err := NormalizePath(got); again != got || err != nil {
			t.Fatalf("NormalizePath(%q) = %q, but NormalizePath(%q) = %q, %v", raw, got, got, again, err)
		}
		if !strings.HasPrefix(got, "/") || strings.Contains(got, "//") {
			t.Fatalf("NormalizePath(%q) = %q: not absolute, or an empty segment", raw, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("NormalizePath(%q) = %q: dot segment", raw, got)
			}
		}
		for i := 0; i < len(got); i++ {
			c := got[i]
			if c == '%' {
				if i+2 >= len(got) || !strings.ContainsRune(hexDigits, rune(got[i+1])) || !strings.ContainsRune(hexDigits, rune(got[i+2])) || canonicalRaw[unhex(got[i+1])<<4|unhex(got[i+2])] {
					t.Fatalf("NormalizePath(%q) = %q: escape at %d is not canonical", raw, got, i)
				}
				continue
			}
			if !canonicalRaw[c] {
				t.Fatalf("NormalizePath(%q) = %q: byte %q at %d should be escaped", raw, got, c, i)
			}
		}
		// The same resource for a reader that decodes, then cleans.
		rawPath, _, _ := strings.Cut(raw, "?")
		want, err := url.PathUnescape(rawPath)
		if err != nil {
			t.Fatalf("NormalizePath(%q) = %q, but the path does not decode: %v", raw, got, err)
		}
		dec, err := url.PathUnescape(got)
		if err != nil {
			t.Fatalf("NormalizePath(%q) = %q does not decode: %v", raw, got, err)
		}
		if path.Clean("/"+want) != path.Clean(dec) {
			t.Fatalf("NormalizePath(%q) = %q (%q), want %q", raw, got, path.Clean(dec), path.Clean("/"+want))
		}
	})
}
