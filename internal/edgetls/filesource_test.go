package edgetls

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writePair(t *testing.T, dir string, c *tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := pemPair(t, c)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestNewFileSourceErrors(t *testing.T) {
	ca := newRootCA(t, "edge root")
	good := ca.issue(t, leafOpts{})
	other := ca.issue(t, leafOpts{})
	expired := ca.issue(t, leafOpts{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
	goodCert, goodKey := pemPair(t, good)
	_, otherKey := pemPair(t, other)
	expCert, expKey := pemPair(t, expired)
	tests := []struct {
		name            string
		certPEM, keyPEM []byte // nil: file missing
		want            []string
	}{
		{"cert missing", nil, goodKey, []string{"read certificate file", "tls.crt", "no such file"}},
		{"key missing", goodCert, nil, []string{"read key file", "tls.key", "no such file"}},
		{"cert not PEM", []byte("hello"), goodKey, []string{"certificate file", "tls.crt", "no PEM CERTIFICATE"}},
		{"key in cert file", goodKey, goodKey, []string{"certificate file", "tls.crt", "no PEM CERTIFICATE"}},
		{"key not PEM", goodCert, []byte("hello"), []string{"key file", "tls.key", "no PEM PRIVATE KEY"}},
		{"key of another certificate", goodCert, otherKey, []string{"tls.crt", "tls.key", "does not match"}},
		{"cert corrupt", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), goodKey, []string{"tls.crt"}},
		{"expired", expCert, expKey, []string{"tls.crt", "expired at"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
			if tt.certPEM != nil {
				if err := os.WriteFile(certFile, tt.certPEM, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.keyPEM != nil {
				if err := os.WriteFile(keyFile, tt.keyPEM, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := NewFileSource(certFile, keyFile, nil)
			if err == nil {
				t.Fatalf("NewFileSource succeeded with serial %v", s.cert.Load().Leaf.SerialNumber)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// servedSerial is the serial of the certificate src serves now, or "" if
// it serves none.
func servedSerial(src CertSource) string {
	c, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
	if err != nil {
		return ""
	}
	return c.Leaf.SerialNumber.String()
}

// waitFor polls cond until it is true or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFileSourceReload(t *testing.T) {
	ca := newRootCA(t, "edge root")
	first, second, third := ca.issue(t, leafOpts{}), ca.issue(t, leafOpts{}), ca.issue(t, leafOpts{})
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, first)
	log, logs := newTestLogger(t)
	s, err := NewFileSource(certFile, keyFile, log)
	if err != nil {
		t.Fatal(err)
	}
	serial := func(c *tls.Certificate) string { return c.Leaf.SerialNumber.String() }
	if got := servedSerial(s); got != serial(first) {
		t.Fatalf("serves %s, want the first pair %s", got, serial(first))
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// A TLS server on the source keeps serving through every change.
	srv := ServerConfig(s, nil)
	cli := &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}
	handshakeSerial := func() string {
		st, cliErr, srvErr := handshake(t, srv, cli)
		if cliErr != nil || srvErr != nil {
			t.Fatalf("handshake: client %v, server %v", cliErr, srvErr)
		}
		return st.PeerCertificates[0].SerialNumber.String()
	}

	// A new valid pair is picked up.
	writePair(t, dir, second)
	waitFor(t, 5*time.Second, "the second pair", func() bool { return servedSerial(s) == serial(second) })
	if got := handshakeSerial(); got != serial(second) {
		t.Errorf("handshake got %s, want the second pair", got)
	}

	// A new pair whose key does not match is refused; the second is kept.
	thirdCert, _ := pemPair(t, third)
	if err := os.WriteFile(certFile, thirdCert, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the refusal in the log", func() bool {
		return strings.Contains(logs.String(), "new tls certificate refused")
	})
	if !strings.Contains(logs.String(), "does not match") {
		t.Errorf("log does not say why the pair was refused:\n%s", logs)
	}
	time.Sleep(1500 * time.Millisecond) // more polls of the same bad pair
	if got := handshakeSerial(); got != serial(second) {
		t.Errorf("after a bad pair, handshake got %s, want the second pair kept", got)
	}
	if n := strings.Count(logs.String(), "new tls certificate refused"); n != 1 {
		t.Errorf("bad pair logged %d times, want once", n)
	}

	// Garbage is refused too.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the refusal of garbage", func() bool {
		return strings.Count(logs.String(), "new tls certificate refused") == 2
	})
	if got := servedSerial(s); got != serial(second) {
		t.Errorf("after garbage, serves %s, want the second pair kept", got)
	}

	// The pair completed: it loads.
	writePair(t, dir, third)
	waitFor(t, 5*time.Second, "the third pair", func() bool { return servedSerial(s) == serial(third) })
	if got := handshakeSerial(); got != serial(third) {
		t.Errorf("handshake got %s, want the third pair", got)
	}

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
}

func TestFileSourceFailsClosedAtExpiry(t *testing.T) {
	ca := newRootCA(t, "edge root")
	short := ca.issue(t, leafOpts{notAfter: time.Now().Add(1500 * time.Millisecond)})
	certFile, keyFile := writePair(t, t.TempDir(), short)
	s, err := NewFileSource(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if servedSerial(s) == "" {
		t.Fatal("no certificate served before expiry")
	}
	// x509 times have a one-second resolution.
	waitFor(t, 4*time.Second, "the certificate to expire", func() bool { return time.Now().After(short.Leaf.NotAfter) })
	if _, err := s.GetCertificate(&tls.ClientHelloInfo{}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("after expiry GetCertificate returned %v, want an expiry error", err)
	}
}

func TestFileSourceWarnsBeforeExpiry(t *testing.T) {
	ca := newRootCA(t, "edge root")
	for _, tt := range []struct {
		name string
		left time.Duration
		warn bool
	}{
		{"10 days left", 10 * 24 * time.Hour, true},
		{"30 days left", 30 * 24 * time.Hour, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile := writePair(t, t.TempDir(), ca.issue(t, leafOpts{notAfter: time.Now().Add(tt.left)}))
			log, logs := newTestLogger(t)
			s, err := NewFileSource(certFile, keyFile, log)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
			defer cancel()
			if err := s.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Run: %v", err)
			}
			if n := strings.Count(logs.String(), "expires soon"); (n == 1) != tt.warn || n > 1 {
				t.Errorf("%d expiry warnings in 2 polls, want warn=%v (once a day):\n%s", n, tt.warn, logs)
			}
		})
	}
}
