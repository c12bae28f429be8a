package vault

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// Generate returns a new random secret value: n random bytes, base64url
// without padding (what `ward secret rotate --generate N` stores and the
// demo's database password is). n is at most MaxValueBytes/2.
func Generate(n int) ([]byte, error) {
	if n <= 0 || n > MaxValueBytes/2 {
		return nil, fmt.Errorf("generate %d bytes: want 1 to %d", n, MaxValueBytes/2)
	}
	raw := make([]byte, n)
	defer clear(raw)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	out := make([]byte, base64.RawURLEncoding.EncodedLen(n))
	base64.RawURLEncoding.Encode(out, raw)
	return out, nil
}
