package ca_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/store"
)

// TestRenewRacingRevokeIDIsRevoked (issue 11): a renewal that runs at the
// same time as RevokeID of its identity either is refused or yields a
// certificate that the revocation covers. Every other round the renewal is
// held between its revocation check and its recording until RevokeID has
// returned, the worst interleaving; the rest race freely.
func TestRenewRacingRevokeIDIsRevoked(t *testing.T) {
	const rounds = 24
	f := newFixture(t)
	ctx := context.Background()
	var gate atomic.Pointer[chan struct{}]
	ca.SetRenewChecked(f.ca, func() {
		if ch := gate.Load(); ch != nil {
			select {
			case <-*ch:
			case <-time.After(5 * time.Second):
			}
		}
	})
	for i := range rounds {
		id := fmt.Sprintf("spiffe://example.org/svc/racer-%d", i)
		old, _ := f.enroll(t, id)
		revoked := make(chan struct{})
		if i%2 == 0 {
			gate.Store(&revoked)
		} else {
			gate.Store(nil)
		}
		var wg sync.WaitGroup
		var renewErr, revokeErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, renewErr = f.ca.Renew(ctx, old.Cert, csrFor(t, p256(t), nil), "127.0.0.1")
		}()
		go func() {
			defer wg.Done()
			defer close(revoked)
			_, revokeErr = f.ca.RevokeID(ctx, spiffeid.RequireFromString(id), 1, "test")
		}()
		wg.Wait()
		if revokeErr != nil {
			t.Fatalf("round %d: RevokeID: %v", i, revokeErr)
		}
		if renewErr != nil && code(renewErr) != "revoked" {
			t.Fatalf("round %d: renewal failed with %v, want success or code revoked", i, renewErr)
		}
		certs, err := f.store.ListCertificates(ctx, store.CertFilter{SPIFFEID: id})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			if !c.Revoked() {
				t.Fatalf("round %d: certificate %s (renewal %v) of %s is not revoked after RevokeID", i, c.Serial, c.Renewal, id)
			}
		}
	}
}
