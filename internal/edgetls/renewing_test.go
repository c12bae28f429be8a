package edgetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIssuer is an ObtainFunc over a test CA: certificates of lifetime
// life, and failures while failing is set.
type fakeIssuer struct {
	t       *testing.T
	ca      *testCA
	life    time.Duration
	failing atomic.Bool
	calls   atomic.Int32
}

func (f *fakeIssuer) obtain(ctx context.Context) (*tls.Certificate, error) {
	f.calls.Add(1)
	if f.failing.Load() {
		return nil, errors.New("CA unreachable")
	}
	now := time.Now()
	return f.ca.issue(f.t, leafOpts{notBefore: now.Add(-time.Second), notAfter: now.Add(f.life)}), nil
}

func TestRenewingSourceRenewsWithoutDroppingService(t *testing.T) {
	ca := newRootCA(t, "ward CA")
	iss := &fakeIssuer{t: t, ca: ca, life: 3 * time.Second}
	log, logs := newTestLogger(t)
	src := NewRenewingSource(iss.obtain, log)
	if err := src.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()

	// Handshake continuously for 7s (more than two lifetimes): every one
	// must succeed and verify, and several certificates must be seen.
	srv := ServerConfig(src, nil)
	seen := map[string]bool{}
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); {
		st, cliErr, srvErr := handshake(t, srv, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"})
		if cliErr != nil || srvErr != nil {
			t.Fatalf("handshake failed during renewal: client %v, server %v", cliErr, srvErr)
		}
		seen[st.PeerCertificates[0].SerialNumber.String()] = true
		time.Sleep(25 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	// 3s certificates renewed at 2s: 4 in 7s (first at 0, then ~2, 4, 6).
	if len(seen) < 3 {
		t.Errorf("saw %d certificates in 7s of 3s certificates, want at least 3 (renewal at 2/3)", len(seen))
	}
	if n := iss.calls.Load(); n > 6 {
		t.Errorf("obtained %d certificates in 7s, want about 4: renewing too early", n)
	}
	if !strings.Contains(logs.String(), "tls certificate renewed") {
		t.Errorf("no renewal logged:\n%s", logs)
	}
}

func TestRenewingSourceBackoffAndExpiry(t *testing.T) {
	ca := newRootCA(t, "ward CA")
	iss := &fakeIssuer{t: t, ca: ca, life: 3 * time.Second}
	log, logs := newTestLogger(t)
	src := NewRenewingSource(iss.obtain, log)
	src.backoffMin, src.backoffMax = 100*time.Millisecond, 400*time.Millisecond
	if err := src.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := servedSerial(src)
	firstLeaf, _ := src.GetCertificate(nil)
	iss.failing.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()

	// Past 2/3 of the lifetime renewals fail: the first certificate is
	// still served, and retries are spaced by the backoff.
	time.Sleep(2500 * time.Millisecond)
	if got := servedSerial(src); got != first {
		t.Fatalf("while the CA fails, serving %q, want the first certificate %s", got, first)
	}
	if !strings.Contains(logs.String(), "tls certificate renewal failed") {
		t.Errorf("failed renewal not logged:\n%s", logs)
	}
	// ~0.5s of failures at 50..400ms: a handful of attempts, not a hot loop.
	if n := iss.calls.Load(); n < 3 || n > 10 {
		t.Errorf("%d obtain calls after 2.5s with failures from 2s, want a few retries (backoff)", n)
	}

	// Once expired, handshakes fail closed.
	waitFor(t, 5*time.Second, "expiry", func() bool { return time.Now().After(firstLeaf.Leaf.NotAfter) })
	if _, err := src.GetCertificate(&tls.ClientHelloInfo{}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("after expiry GetCertificate returned %v, want an expiry error", err)
	}

	// The CA comes back: a new certificate within the backoff cap.
	iss.failing.Store(false)
	waitFor(t, 3*time.Second, "recovery", func() bool { s := servedSerial(src); return s != "" && s != first })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
}

func TestRenewingSourceFirstObtain(t *testing.T) {
	ca := newRootCA(t, "ward CA")
	iss := &fakeIssuer{t: t, ca: ca, life: time.Hour}
	iss.failing.Store(true)
	src := NewRenewingSource(iss.obtain, nil)
	if err := src.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "CA unreachable") {
		t.Fatalf("Start with a failing CA returned %v, want its error", err)
	}
	if err := src.Run(t.Context()); err == nil {
		t.Fatal("Run with a failing CA returned nil")
	}
	if _, err := src.GetCertificate(&tls.ClientHelloInfo{}); !errors.Is(err, errNoCertificate) {
		t.Errorf("GetCertificate without certificate: %v", err)
	}

	// Unusable certificates are refused like errors.
	other := newKey(t)
	bad := map[string]func() (*tls.Certificate, error){
		"expired": func() (*tls.Certificate, error) {
			return ca.issue(t, leafOpts{notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)}), nil
		},
		"key mismatch": func() (*tls.Certificate, error) {
			c := ca.issue(t, leafOpts{})
			c.PrivateKey = other
			return c, nil
		},
		"no certificate": func() (*tls.Certificate, error) { return &tls.Certificate{PrivateKey: other}, nil },
		"garbage": func() (*tls.Certificate, error) {
			return &tls.Certificate{Certificate: [][]byte{{1, 2}}, PrivateKey: other}, nil
		},
	}
	for name, f := range bad {
		src := NewRenewingSource(func(context.Context) (*tls.Certificate, error) { return f() }, nil)
		if err := src.Start(t.Context()); err == nil {
			t.Errorf("%s: Start accepted an unusable certificate", name)
		}
	}

	// Concurrent Starts obtain once.
	iss.failing.Store(false)
	iss.calls.Store(0)
	src = NewRenewingSource(iss.obtain, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := src.Start(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := iss.calls.Load(); n != 1 {
		t.Errorf("4 concurrent Starts obtained %d times, want 1", n)
	}
}

func TestRenewTime(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	leaf := func(life time.Duration) *x509.Certificate {
		return &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(life)}
	}
	tests := []struct {
		name        string
		life        time.Duration
		obtained    time.Time
		renewBefore time.Duration
		want        time.Time
	}{
		{"2/3 of 90 days", 90 * day, t0, 0, t0.Add(60 * day)},
		{"2/3 of 1h", time.Hour, t0, 0, t0.Add(40 * time.Minute)},
		{"renewBefore earlier", 90 * day, t0, 45 * day, t0.Add(45 * day)},
		{"renewBefore later than 2/3", 90 * day, t0, 10 * day, t0.Add(60 * day)},
		{"renewBefore over the lifetime: floor of a minute", 90 * day, t0.Add(time.Hour), 365 * day, t0.Add(time.Hour + time.Minute)},
		{"cached, due: floor after obtained", 90 * day, t0.Add(80 * day), 0, t0.Add(80*day + time.Minute)},
		{"short lifetime: floor is a third", 3 * time.Second, t0, time.Hour, t0.Add(time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renewTime(leaf(tt.life), tt.obtained, tt.renewBefore, defaultMinRenewGap); !got.Equal(tt.want) {
				t.Errorf("renewTime = %v, want %v", got, tt.want)
			}
		})
	}
}
