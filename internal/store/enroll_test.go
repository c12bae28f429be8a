package store_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/store"
)

// TestConcurrentEnrollPairs: 64 tokens each presented twice at once on
// SQLite's single writer: every pair has exactly one winner, the loser is
// told the token was used, and all 64 certificates are stored.
func TestConcurrentEnrollPairs(t *testing.T) {
	s, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "ward.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	now := time.Now()
	const n = 64
	hashes := make([][]byte, n)
	for i := range n {
		h := sha256.Sum256([]byte(fmt.Sprint("token", i)))
		hashes[i] = h[:]
		tok := store.Token{Hash: h[:], SPIFFEID: fmt.Sprintf("spiffe://example.org/svc/s%d", i), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	cert := func(i, j int) store.Certificate {
		return store.Certificate{Serial: fmt.Sprintf("%x%02x", i+1, j), SPIFFEID: fmt.Sprintf("spiffe://example.org/svc/s%d", i), IssuerID: "i",
			NotBefore: now, NotAfter: now.Add(time.Hour), DER: []byte{1}}
	}
	// Every token is presented twice at once: exactly one of each pair wins.
	var wg sync.WaitGroup
	errs := make([][2]error, n)
	for i := range n {
		for j := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i][j] = s.Enroll(ctx, hashes[i], now, cert(i, j))
			}()
		}
	}
	wg.Wait()
	for i, e := range errs {
		ok := 0
		for _, err := range e {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrTokenUsed):
				t.Errorf("token %d: unexpected error %v", i, err)
			}
		}
		if ok != 1 {
			t.Errorf("token %d: %d enrollments succeeded, want 1", i, ok)
		}
	}
	certs, err := s.ListCertificates(ctx, store.CertFilter{})
	if err != nil || len(certs) != n {
		t.Fatalf("%d certificates stored (%v), want %d", len(certs), err, n)
	}
}
