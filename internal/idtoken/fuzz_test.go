package idtoken

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/identity"
)

// FuzzVerify feeds arbitrary tokens to Verify: it must never panic, and
// nothing but the one genuine token may verify. Seeds are committed under
// testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	ca := newTestCA(f)
	gw := ca.svid(f, "/gateway/edge")
	orders := spiffeid.RequireFromString("spiffe://example.org/svc/orders")
	now := time.Now()
	good, err := Sign(gw, Claims{Audience: orders.String(), Subject: "alice"}, now, time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Fuzz(func(t *testing.T, token string) {
		v := &Verifier{Audience: orders, Bundle: func() *identity.Bundle { return ca.bundle }}
		c, err := v.Verify(token, gw.ID, now)
		if err == nil && token != good {
			t.Fatalf("a token that was never signed verified: %+v", c)
		}
	})
}
