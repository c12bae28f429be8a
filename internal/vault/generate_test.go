package vault

import (
	"encoding/base64"
	"testing"
)

// TestGenerate: n random bytes, base64url, different each time; sizes
// outside 1..MaxValueBytes/2 are refused.
func TestGenerate(t *testing.T) {
	a, err := Generate(24)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(24)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(string(a))
	if err != nil || len(raw) != 24 || len(a) != 32 || string(a) == string(b) {
		t.Errorf("Generate(24) = %q, %q (%v)", a, b, err)
	}
	for _, n := range []int{0, -1, MaxValueBytes/2 + 1} {
		if v, err := Generate(n); err == nil || v != nil {
			t.Errorf("Generate(%d) = %q, %v; want an error", n, v, err)
		}
	}
}
