package identity

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var _ io.Writer = (*syncBuffer)(nil)

// result is the outcome of one connection attempt.
type result struct {
	serverErr, clientErr error
	handled              bool // the server's "handler" ran
	resumed              bool // the server resumed a session
}

// connect makes one TLS connection over 127.0.0.1 and exchanges a line: the
// server's handler runs only after its handshake succeeded.
func connect(t *testing.T, server, client *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var r result
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			r.serverErr = err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(conn, server)
		if r.serverErr = tc.Handshake(); r.serverErr != nil {
			return
		}
		r.handled, r.resumed = true, tc.ConnectionState().DidResume
		_, r.serverErr = io.WriteString(tc, "ok\n")
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(conn, client)
	if r.clientErr = tc.Handshake(); r.clientErr == nil {
		var line string
		line, r.clientErr = bufio.NewReader(tc).ReadString('\n')
		if r.clientErr == nil && line != "ok\n" {
			r.clientErr = errors.New("unexpected reply " + line)
		}
	}
	conn.Close()
	<-done
	return r
}

// staticServer is a server config presenting cert and checking clients with
// VerifyPeer, independent of any Source.
func staticServer(cert *tls.Certificate, b *Bundle) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{*cert},
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: VerifyPeer(func() *Bundle { return b }, nil, nil),
	}
}

// staticClient is a client config presenting cert (nil: none) and checking
// servers with VerifyPeer.
func staticClient(cert *tls.Certificate, b *Bundle) *tls.Config {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true,
		VerifyConnection:   VerifyPeer(func() *Bundle { return b }, nil, nil),
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

func TestPeerVerification(t *testing.T) {
	ca := newFakeCA(t)
	other := newFakeCA(t)
	retired := ca.newIntermediate() // chains to ca's root, never in the bundle
	server := newSource(t, ca, svc("server"))
	client := newSource(t, ca, svc("client"))
	bundle := ca.bundle()
	now := time.Now()
	valid := func(ic *caCert, id spiffeid.ID) *tls.Certificate {
		return ca.tlsCert(ic, id, now.Add(-time.Minute), now.Add(time.Hour))
	}

	revokedLeaf := valid(ca.active, svc("client"))
	revokedInter := ca.newIntermediate()
	revokedInterBundle := ca.bundle()
	revokedInterBundle, _ = NewBundle(td, append(revokedInterBundle.Roots, append(revokedInterBundle.Intermediates, revokedInter.cert)...))
	server.SetRevocations(1, []string{revokedLeaf.Leaf.SerialNumber.Text(16), revokedInter.cert.SerialNumber.Text(16)})
	if err := server.SetBundle(revokedInterBundle); err != nil {
		t.Fatal(err)
	}
	if err := client.SetBundle(revokedInterBundle); err != nil {
		t.Fatal(err)
	}
	client.SetRevocations(1, []string{revokedLeaf.Leaf.SerialNumber.Text(16)})

	serverSide := server.ServerTLSConfig(AuthorizeID(svc("client")))
	clientSide := client.ClientTLSConfig(AuthorizeID(svc("server")))

	tests := []struct {
		name           string
		server, client *tls.Config
		refusedBy      string // "", "server" or "client"
		reason         string
		wantErr        string
	}{
		{name: "valid peers", server: serverSide, client: clientSide},
		{name: "valid client of static server", server: staticServer(valid(ca.active, svc("server")), bundle), client: clientSide},
		{name: "valid server for static client", server: server.ServerTLSConfig(nil), client: staticClient(valid(ca.active, svc("anyone")), bundle)},
		{
			name: "no client certificate", server: serverSide, client: staticClient(nil, bundle),
			refusedBy: "server", wantErr: "client didn't provide a certificate",
		},
		{
			name: "client from another CA", server: serverSide, client: staticClient(other.tlsCert(other.active, svc("client"), now.Add(-time.Minute), now.Add(time.Hour)), bundle),
			refusedBy: "server", reason: ReasonUntrusted, wantErr: "untrusted peer: certificate of spiffe://example.org/svc/client does not chain to the trust bundle: x509: certificate signed by unknown authority",
		},
		{
			name: "server from another CA", server: staticServer(other.tlsCert(other.active, svc("server"), now.Add(-time.Minute), now.Add(time.Hour)), bundle), client: clientSide,
			refusedBy: "client", reason: ReasonUntrusted, wantErr: "does not chain to the trust bundle",
		},
		{
			name: "expired client", server: serverSide, client: staticClient(ca.tlsCert(ca.active, svc("client"), now.Add(-2*time.Hour), now.Add(-time.Hour)), bundle),
			refusedBy: "server", reason: ReasonUntrusted, wantErr: "untrusted peer: certificate of spiffe://example.org/svc/client expired at",
		},
		{
			name: "expired server", server: staticServer(ca.tlsCert(ca.active, svc("server"), now.Add(-2*time.Hour), now.Add(-time.Hour)), bundle), client: clientSide,
			refusedBy: "client", reason: ReasonUntrusted, wantErr: "certificate of spiffe://example.org/svc/server expired at",
		},
		{
			name: "revoked client leaf", server: serverSide, client: staticClient(revokedLeaf, bundle),
			refusedBy: "server", reason: ReasonRevoked, wantErr: "peer certificate serial " + revokedLeaf.Leaf.SerialNumber.Text(16) + " (spiffe://example.org/svc/client) is revoked",
		},
		{
			name: "revoked server leaf", server: staticServer(revokedLeaf, bundle), client: client.ClientTLSConfig(nil),
			refusedBy: "client", reason: ReasonRevoked, wantErr: "is revoked",
		},
		{
			name: "revoked intermediate", server: serverSide, client: staticClient(valid(revokedInter, svc("client")), bundle),
			refusedBy: "server", reason: ReasonRevoked, wantErr: "peer spiffe://example.org/svc/client: intermediate certificate serial " + revokedInter.cert.SerialNumber.Text(16),
		},
		{
			name: "client with the wrong SPIFFE ID", server: serverSide, client: staticClient(valid(ca.active, svc("x")), bundle),
			refusedBy: "server", reason: ReasonUnauthorized, wantErr: "peer spiffe://example.org/svc/x is not authorized: expected spiffe://example.org/svc/client",
		},
		{
			name: "server with the wrong SPIFFE ID", server: staticServer(valid(ca.active, svc("impostor")), bundle), client: clientSide,
			refusedBy: "client", reason: ReasonUnauthorized, wantErr: "peer spiffe://example.org/svc/impostor is not authorized: expected spiffe://example.org/svc/server",
		},
		{
			name: "client of another trust domain", server: server.ServerTLSConfig(nil), client: staticClient(valid(ca.active, spiffeid.RequireFromString("spiffe://evil.org/svc/client")), bundle),
			refusedBy: "server", reason: ReasonUntrusted, wantErr: "spiffe://evil.org/svc/client is outside trust domain example.org",
		},
		{
			name: "client issued by an intermediate not in the bundle", server: serverSide, client: staticClient(valid(retired, svc("client")), bundle),
			refusedBy: "server", reason: ReasonUntrusted, wantErr: "does not chain to the trust bundle: x509: certificate signed by unknown authority",
		},
		{
			name: "client not authorized by member-of", server: server.ServerTLSConfig(AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString("other.org"))), client: clientSide,
			refusedBy: "server", reason: ReasonUnauthorized, wantErr: "peer spiffe://example.org/svc/client is not authorized: expected a member of other.org",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := connect(t, tt.server, tt.client)
			switch tt.refusedBy {
			case "":
				if r.serverErr != nil || r.clientErr != nil || !r.handled {
					t.Fatalf("want success, got server error %v, client error %v, handled %v", r.serverErr, r.clientErr, r.handled)
				}
				return
			case "server":
				checkRefusal(t, r.serverErr, tt.reason, tt.wantErr)
				if r.clientErr == nil {
					t.Error("client did not notice the refusal")
				}
			case "client":
				checkRefusal(t, r.clientErr, tt.reason, tt.wantErr)
				if r.serverErr == nil {
					t.Error("server did not notice the refusal")
				}
			}
			if r.handled {
				t.Error("the server handler ran for a refused connection")
			}
		})
	}
}

func checkRefusal(t *testing.T, err error, reason, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want it to contain %q", err, want)
	}
	if reason == "" {
		return
	}
	var pe *PeerError
	if !errors.As(err, &pe) || pe.Reason != reason {
		t.Fatalf("error %v: want a PeerError with reason %q, got %#v", err, reason, pe)
	}
}

func TestIntermediateRotation(t *testing.T) {
	ca := newFakeCA(t)
	old := ca.active
	next := ca.newIntermediate()
	ca.publish(next)
	server := newSource(t, ca, svc("server")) // bundle: old and next
	if n := len(server.Bundle().Intermediates); n != 2 {
		t.Fatalf("bundle has %d intermediates, want 2", n)
	}
	now := time.Now()
	fromOld := ca.tlsCert(old, svc("client"), now, now.Add(time.Hour))
	fromNext := ca.tlsCert(next, svc("client"), now, now.Add(time.Hour))
	cfg := server.ServerTLSConfig(nil)
	for _, c := range []*tls.Certificate{fromOld, fromNext} {
		if r := connect(t, cfg, staticClient(c, ca.bundle())); r.serverErr != nil || r.clientErr != nil || !r.handled {
			t.Fatalf("while both are trusted, cert from %s refused: %v / %v", c.Leaf.Issuer.CommonName, r.serverErr, r.clientErr)
		}
	}

	// Switch to next, then retire old: the server moves to an SVID from
	// next and learns the bundle without old at its following renewal.
	ca.activate(next)
	if err := server.renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	ca.retire(old)
	if err := server.renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(server.Bundle().Intermediates); n != 1 {
		t.Fatalf("bundle has %d intermediates after retirement, want 1", n)
	}
	if got := server.Current().Chain[1]; !got.Equal(next.cert) {
		t.Fatalf("renewed svid issued by %s, want %s", got.Subject.CommonName, next.cert.Subject.CommonName)
	}
	r := connect(t, cfg, staticClient(fromOld, ca.bundle()))
	checkRefusal(t, r.serverErr, ReasonUntrusted, "certificate signed by unknown authority")
	if r.handled {
		t.Error("handler ran for an svid of a retired intermediate")
	}
	if r := connect(t, cfg, staticClient(fromNext, ca.bundle())); r.serverErr != nil || !r.handled {
		t.Fatalf("cert from the new intermediate refused: %v", r.serverErr)
	}
}

func TestAuthorizers(t *testing.T) {
	a, b := svc("a"), svc("b")
	foreign := spiffeid.RequireFromString("spiffe://other.org/svc/a")
	tests := []struct {
		name    string
		auth    Authorizer
		id      spiffeid.ID
		wantErr string
	}{
		{"id match", AuthorizeID(a), a, ""},
		{"id mismatch", AuthorizeID(a), b, "peer spiffe://example.org/svc/b is not authorized: expected spiffe://example.org/svc/a"},
		{"any", AuthorizeAny(), foreign, ""},
		{"member", AuthorizeMemberOf(td), b, ""},
		{"not member", AuthorizeMemberOf(td), foreign, "peer spiffe://other.org/svc/a is not authorized: expected a member of example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.auth(tt.id)
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestResumedSessionIsVerified checks that a resumed TLS session, which
// skips certificate exchange, still goes through the peer check.
func TestResumedSessionIsVerified(t *testing.T) {
	ca := newFakeCA(t)
	server := newSource(t, ca, svc("server"))
	client := newSource(t, ca, svc("client"))
	serverCfg := server.ServerTLSConfig(AuthorizeID(svc("client")))
	clientCfg := client.ClientTLSConfig(AuthorizeID(svc("server")))
	clientCfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	clientCfg.ServerName = "server" // the cache key; connect listens on a new port each time

	for i, wantResumed := range []bool{false, true} {
		if r := connect(t, serverCfg, clientCfg); !r.handled || r.resumed != wantResumed {
			t.Fatalf("connection %d: handled %v, resumed %v (want %v), errors %v / %v", i, r.handled, r.resumed, wantResumed, r.serverErr, r.clientErr)
		}
	}
	server.SetRevocations(1, []string{client.Current().Serial()})
	r := connect(t, serverCfg, clientCfg)
	checkRefusal(t, r.serverErr, ReasonRevoked, "peer certificate serial "+client.Current().Serial())
	if r.handled {
		t.Error("handler ran on a resumed session of a revoked peer")
	}
}

// TestMeshClientRefusesTLS12Server (issue 19 item 7, invariant 2: mesh TLS
// 1.3 only): the mesh client refuses a server that speaks at most TLS 1.2,
// though it presents a valid SVID with the expected ID; the same server
// allowed TLS 1.3 is accepted, so the version alone decides.
func TestMeshClientRefusesTLS12Server(t *testing.T) {
	ca := newFakeCA(t)
	client := newSource(t, ca, svc("client"))
	bundle := ca.bundle()
	now := time.Now()
	cert := ca.tlsCert(ca.active, svc("server"), now.Add(-time.Minute), now.Add(time.Hour))
	server := func(maxVersion uint16) *tls.Config {
		c := staticServer(cert, bundle)
		c.MinVersion, c.MaxVersion = tls.VersionTLS12, maxVersion
		return c
	}
	clientSide := client.ClientTLSConfig(AuthorizeID(svc("server")))
	if r := connect(t, server(tls.VersionTLS13), clientSide); r.clientErr != nil || !r.handled {
		t.Fatalf("TLS 1.3 server refused: client %v, server %v", r.clientErr, r.serverErr)
	}
	r := connect(t, server(tls.VersionTLS12), clientSide)
	if r.clientErr == nil || r.handled {
		t.Fatalf("mesh client accepted a TLS 1.2 server (handled %v)", r.handled)
	}
	if !strings.Contains(r.clientErr.Error(), "protocol version") {
		t.Fatalf("client error %q, want a protocol version refusal", r.clientErr)
	}
}
