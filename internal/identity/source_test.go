package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seen is a set of strings shared by goroutines.
type seen struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *seen) add(k string) { s.mu.Lock(); s.m[k] = true; s.mu.Unlock() }
func (s *seen) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k]
}
func (s *seen) len() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.m) }

// TestRotationUnderLoad runs an mTLS HTTP server and client whose SVIDs live
// four seconds (renewed every two), through rotations and an intermediate
// rotation, and requires every request to succeed.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	ca := newFakeCA(t)
	ca.setTTL(4 * time.Second)
	server := newSource(t, ca, svc("server"))
	client := newSource(t, ca, svc("client"))
	run(t, server)
	run(t, client)

	newSeen := func() *seen { return &seen{m: map[string]bool{}} }
	clientCerts, serverCerts, clientIssuers, serverIssuers := newSeen(), newSeen(), newSeen(), newSeen()
	var h2 atomic.Int64
	serverLog := &syncBuffer{}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			leaf := r.TLS.PeerCertificates[0]
			clientCerts.add(leaf.SerialNumber.Text(16))
			clientIssuers.add(leaf.Issuer.CommonName)
			_, _ = io.WriteString(w, "ok")
		}),
		TLSConfig: server.ServerTLSConfig(AuthorizeID(svc("client"))),
		ErrorLog:  log.New(serverLog, "", 0), // not t.Output: the server may log after the test
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	url := "https://" + ln.Addr().String() + "/"

	get := func(hc *http.Client) error {
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok" {
			return fmt.Errorf("status %d, body %q, err %v", resp.StatusCode, body, err)
		}
		leaf := resp.TLS.PeerCertificates[0]
		serverCerts.add(leaf.SerialNumber.Text(16))
		serverIssuers.add(leaf.Issuer.CommonName)
		if resp.ProtoMajor == 2 {
			h2.Add(1)
		}
		return nil
	}
	// Keep-alive HTTP/1.1, HTTP/2, and a new connection per request.
	transports := []*http.Transport{
		{TLSClientConfig: client.ClientTLSConfig(AuthorizeID(svc("server")))},
		{TLSClientConfig: client.ClientTLSConfig(AuthorizeID(svc("server"))), ForceAttemptHTTP2: true},
		{TLSClientConfig: client.ClientTLSConfig(AuthorizeID(svc("server"))), DisableKeepAlives: true},
	}
	var requests, failures atomic.Int64
	var errMu sync.Mutex
	var errs []error
	load, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, tr := range transports {
		hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		for range 2 {
			wg.Go(func() {
				for load.Err() == nil {
					requests.Add(1)
					if err := get(hc); err != nil {
						failures.Add(1)
						errMu.Lock()
						errs = append(errs, err)
						errMu.Unlock()
					}
				}
			})
		}
	}
	stopLoad := func() {
		stop()
		wg.Wait()
		for _, tr := range transports {
			tr.CloseIdleConnections()
		}
	}
	defer stopLoad()

	// Intermediate rotation under load: publish the new intermediate, let
	// both workloads pick the bundle up at their renewal, then issue from it.
	old, next := ca.active, ca.newIntermediate()
	ca.publish(next)
	eventually(t, 10*time.Second, "both workloads to trust the new intermediate", func() bool {
		return len(server.Bundle().Intermediates) == 2 && len(client.Bundle().Intermediates) == 2
	})
	ca.activate(next)
	eventually(t, 10*time.Second, "svids from the new intermediate in use and two rotations on each side", func() bool {
		return clientIssuers.has(next.cert.Subject.CommonName) && serverIssuers.has(next.cert.Subject.CommonName) &&
			clientCerts.len() >= 3 && serverCerts.len() >= 3
	})

	stopLoad()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatal(err)
	}
	t.Logf("%d requests (%d over HTTP/2), %d client and %d server certificates", requests.Load(), h2.Load(), clientCerts.len(), serverCerts.len())
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed, first: %v", n, requests.Load(), errs[:min(len(errs), 5)])
	}
	// Handshakes cut by Close are expected; a refused peer is not.
	if out := strings.ToLower(serverLog.String()); strings.Contains(out, "peer") || strings.Contains(out, "certificate") || strings.Contains(out, "svid") {
		t.Errorf("server refused handshakes:\n%s", out)
	}
	if requests.Load() < 50 || h2.Load() == 0 || !clientIssuers.has(old.cert.Subject.CommonName) {
		t.Errorf("load too light to mean anything: %d requests, %d over HTTP/2", requests.Load(), h2.Load())
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.renewals > 10 { // about 2 per side; a backdated NotBefore must not make renewal spin
		t.Errorf("%d renewals in a few seconds", ca.renewals)
	}
}

func TestRevocationWatch(t *testing.T) {
	t.Parallel()
	ca := newFakeCA(t)
	server := newSource(t, ca, svc("server"))
	client := newSource(t, ca, svc("client"))
	run(t, server)
	serverCfg, clientCfg := server.ServerTLSConfig(nil), client.ClientTLSConfig(AuthorizeID(svc("server")))
	if r := connect(t, serverCfg, clientCfg); !r.handled {
		t.Fatalf("before revocation: %v / %v", r.serverErr, r.clientErr)
	}

	sn := client.Current().Serial()
	start := time.Now()
	ca.revoke(sn)
	eventually(t, time.Second, "the watcher to fetch the revocation", func() bool { return server.Revoked(sn) })
	t.Logf("revocation applied after %v", time.Since(start))

	r := connect(t, serverCfg, clientCfg)
	checkRefusal(t, r.serverErr, ReasonRevoked, "peer certificate serial "+sn+" (spiffe://example.org/svc/client) is revoked")
	if r.handled {
		t.Error("handler ran for a revoked peer")
	}
	server.SetRevocations(0, nil) // older than the watcher's version 1: ignored
	if !server.Revoked(strings.ToUpper(sn)) {
		t.Error("an older revocation list replaced a newer one")
	}
}

func TestExpiredSVIDFailsClosed(t *testing.T) {
	t.Parallel()
	ca := newFakeCA(t)
	peer := newSource(t, ca, svc("peer"))
	ca.setTTL(2 * time.Second)
	ca.setFailRenew(true)
	logs := &syncBuffer{}
	self := newSource(t, ca, svc("self"), func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), logs), nil))
	})
	run(t, self)
	leaf := self.Current().Leaf()

	// While valid, the SVID keeps working although renewal fails.
	if r := connect(t, peer.ServerTLSConfig(nil), self.ClientTLSConfig(nil)); !r.handled {
		t.Fatalf("valid svid refused: %v / %v", r.serverErr, r.clientErr)
	}
	time.Sleep(time.Until(leaf.NotAfter) + 100*time.Millisecond)

	if got := self.Current(); got == nil || !got.Leaf().Equal(leaf) {
		t.Fatal("the expired svid was dropped or replaced")
	}
	wantErr := "own svid spiffe://example.org/svc/self expired at"
	r := connect(t, peer.ServerTLSConfig(nil), self.ClientTLSConfig(nil))
	if r.clientErr == nil || !strings.Contains(r.clientErr.Error(), wantErr) || r.handled {
		t.Fatalf("as client: error %v, handled %v; want %q", r.clientErr, r.handled, wantErr)
	}
	r = connect(t, self.ServerTLSConfig(nil), peer.ClientTLSConfig(nil))
	if r.serverErr == nil || !strings.Contains(r.serverErr.Error(), wantErr) || r.handled {
		t.Fatalf("as server: error %v, handled %v; want %q", r.serverErr, r.handled, wantErr)
	}
	out := logs.String()
	if !strings.Contains(out, `level=WARN msg="svid renewal failed; will retry"`) || !strings.Contains(out, `level=ERROR msg="svid expired and renewal failed`) {
		t.Errorf("renewal failures not logged as warnings, then errors:\n%s", out)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.renewals < 3 {
		t.Errorf("%d renewal attempts, want retries", ca.renewals)
	}
}

func TestTrustFeedDeliversBundle(t *testing.T) {
	t.Parallel()
	ca := newFakeCA(t)
	src := newSource(t, ca, svc("server"))
	run(t, src)
	next := ca.newIntermediate()
	ca.publish(next)
	ca.revoke() // a new feed version with no new revocation: the bundle changed
	eventually(t, time.Second, "the feed to deliver the new intermediate", func() bool {
		for _, c := range src.Bundle().Intermediates {
			if c.Equal(next.cert) {
				return true
			}
		}
		return false
	})
}
