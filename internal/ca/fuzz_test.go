package ca_test

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/ca"
)

// FuzzParseCSR: whatever bytes arrive at the enrollment endpoint, ParseCSR
// never panics, and anything it accepts satisfies the SVID rules.
func FuzzParseCSR(f *testing.F) {
	f.Add(csrFor(f, p256(f), nil))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	want := spiffeid.RequireFromString("spiffe://example.org/svc/a")
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := ca.ParseCSR(der, want)
		if err != nil {
			return
		}
		if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) != 0 || len(csr.URIs) > 1 {
			t.Fatalf("accepted a CSR with forbidden SANs")
		}
		if len(csr.URIs) == 1 && csr.URIs[0].String() != want.String() {
			t.Fatalf("accepted a CSR for %s", csr.URIs[0])
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR with a bad signature")
		}
	})
}

// FuzzParseToken: ParseToken never panics and accepts only the exact shape
// of a Ward join token.
func FuzzParseToken(f *testing.F) {
	f.Add("wjt1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("wjt1_")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		h, err := ca.ParseToken(tok)
		if err != nil {
			if len(tok) >= 8 && strings.Contains(err.Error(), tok) {
				t.Fatalf("error echoes the token")
			}
			return
		}
		if !strings.HasPrefix(tok, "wjt1_") || len(tok) != 48 || h == [32]byte{} {
			t.Fatalf("accepted %q", tok)
		}
	})
}
