package edgetls

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// handshake runs one TLS handshake between a server with serverCfg and a
// client with clientCfg over loopback TCP and returns what the client saw,
// the client's error and the server's.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (tls.ConnectionState, error, error) {
	st, _, cliErr, srvErr := handshake2(t, serverCfg, clientCfg)
	return st, cliErr, srvErr
}

// handshake2 is handshake that also returns what the server saw.
func handshake2(t *testing.T, serverCfg, clientCfg *tls.Config) (cliSt, srvSt tls.ConnectionState, cliErr, srvErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvDone <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, serverCfg)
		err = tc.HandshakeContext(t.Context())
		if err == nil {
			// Let a TLS 1.3 client read the server's verdict on its
			// certificate, which comes after the handshake.
			_, _ = tc.Write([]byte("x"))
			srvSt = tc.ConnectionState()
		}
		srvDone <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: clientCfg}
	c, cliErr := d.DialContext(ctx, "tcp", ln.Addr().String())
	if cliErr == nil {
		tc := c.(*tls.Conn)
		_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := tc.Read(make([]byte, 1)); err != nil {
			cliErr = err
		}
		cliSt = tc.ConnectionState()
		tc.Close()
	}
	srvErr = <-srvDone
	return cliSt, srvSt, cliErr, srvErr
}

func TestServerConfigHandshakes(t *testing.T) {
	root := newRootCA(t, "edge root")
	ica := root.intermediate(t, "edge intermediate")
	src := staticSource{ica.issue(t, leafOpts{chain: []*testCA{ica}})}
	srv := ServerConfig(src, nil)
	client := func(mod func(*tls.Config)) *tls.Config {
		c := &tls.Config{RootCAs: root.pool(), ServerName: "localhost"}
		mod(c)
		return c
	}
	tests := []struct {
		name    string
		client  *tls.Config
		ok      bool
		version uint16
		suite   uint16 // if ok and set, the suite negotiated
		proto   string
	}{
		{name: "TLS 1.1 refused", client: client(func(c *tls.Config) {
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		})},
		{name: "TLS 1.2 CBC suites refused", client: client(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
		})},
		{name: "TLS 1.2 static RSA key exchange refused", client: client(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}
		})},
		{name: "TLS 1.2 with only P-521 refused", client: client(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CurvePreferences = []tls.CurveID{tls.CurveP521}
		})},
		{name: "TLS 1.2 AES-GCM", ok: true, version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			client: client(func(c *tls.Config) {
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
			})},
		{name: "TLS 1.2 ChaCha20-Poly1305", ok: true, version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			client: client(func(c *tls.Config) {
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
			})},
		{name: "TLS 1.3", ok: true, version: tls.VersionTLS13, client: client(func(*tls.Config) {})},
		{name: "ALPN h2 preferred", ok: true, version: tls.VersionTLS13, proto: "h2", client: client(func(c *tls.Config) {
			c.NextProtos = []string{"http/1.1", "h2"}
		})},
		{name: "ALPN http/1.1", ok: true, version: tls.VersionTLS13, proto: "http/1.1", client: client(func(c *tls.Config) {
			c.NextProtos = []string{"http/1.1"}
		})},
		{name: "acme-tls/1 not offered without ACME", client: client(func(c *tls.Config) {
			c.NextProtos = []string{acmeALPN}
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, cliErr, srvErr := handshake(t, srv, tt.client)
			if !tt.ok {
				if cliErr == nil || srvErr == nil {
					t.Fatalf("handshake succeeded (version %x, suite %s), want refused", st.Version, tls.CipherSuiteName(st.CipherSuite))
				}
				return
			}
			if cliErr != nil || srvErr != nil {
				t.Fatalf("handshake failed: client %v, server %v", cliErr, srvErr)
			}
			if st.Version != tt.version {
				t.Errorf("version %x, want %x", st.Version, tt.version)
			}
			if tt.suite != 0 && st.CipherSuite != tt.suite {
				t.Errorf("suite %s, want %s", tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(tt.suite))
			}
			if st.NegotiatedProtocol != tt.proto {
				t.Errorf("ALPN %q, want %q", st.NegotiatedProtocol, tt.proto)
			}
			if len(st.PeerCertificates) != 2 {
				t.Errorf("server sent %d certificates, want leaf and intermediate", len(st.PeerCertificates))
			}
		})
	}
}

func TestServerConfigSuitesAreAEAD(t *testing.T) {
	cfg := ServerConfig(staticSource{}, nil)
	if cfg.MinVersion != tls.VersionTLS12 || cfg.MaxVersion != tls.VersionTLS13 {
		t.Errorf("versions %x..%x, want TLS 1.2..1.3", cfg.MinVersion, cfg.MaxVersion)
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is not ECDHE with AEAD", name)
		}
		if slices.ContainsFunc(tls.InsecureCipherSuites(), func(s *tls.CipherSuite) bool { return s.ID == id }) {
			t.Errorf("suite %s is insecure", name)
		}
	}
	if len(cfg.CipherSuites) != 6 {
		t.Errorf("%d suites, want the 6 ECDHE AEAD ones", len(cfg.CipherSuites))
	}
	if cfg.ClientAuth != tls.NoClientCert || cfg.ClientCAs != nil {
		t.Error("client certificates requested without client CAs")
	}
	if !slices.Equal(cfg.NextProtos, []string{"h2", "http/1.1"}) {
		t.Errorf("NextProtos %q", cfg.NextProtos)
	}
	// Two configs do not share slices: the gateway may tweak its own.
	cfg.CipherSuites[0] = 0
	if ServerConfig(staticSource{}, nil).CipherSuites[0] == 0 {
		t.Error("ServerConfig returns a shared CipherSuites slice")
	}
}

func TestServerConfigClientCertificates(t *testing.T) {
	root := newRootCA(t, "edge root")
	users := newRootCA(t, "users CA")
	strangers := newRootCA(t, "stranger CA")
	srv := ServerConfig(staticSource{root.issue(t, leafOpts{})}, users.pool())
	if srv.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Fatalf("ClientAuth %v, want VerifyClientCertIfGiven", srv.ClientAuth)
	}
	alice := users.issue(t, leafOpts{names: []string{"alice"}, client: true})
	mallory := strangers.issue(t, leafOpts{names: []string{"alice"}, client: true})
	for _, tt := range []struct {
		name   string
		cert   *tls.Certificate
		ok     bool
		peerCN string
	}{
		{name: "no certificate", ok: true},
		{name: "certificate from the client CA", cert: alice, ok: true, peerCN: "alice"},
		{name: "certificate from another CA", cert: mallory},
	} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tt.name+"/"+tls.VersionName(v), func(t *testing.T) {
				cli := &tls.Config{RootCAs: root.pool(), ServerName: "localhost", MaxVersion: v}
				if tt.cert != nil {
					// Send it even if the server's CA list does not name its issuer.
					cli.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tt.cert, nil }
				}
				_, st, cliErr, srvErr := handshake2(t, srv, cli)
				if !tt.ok {
					if srvErr == nil || cliErr == nil {
						t.Fatal("handshake with a certificate of an unknown CA succeeded")
					}
					return
				}
				if cliErr != nil || srvErr != nil {
					t.Fatalf("handshake failed: client %v, server %v", cliErr, srvErr)
				}
				var cn string
				if len(st.PeerCertificates) > 0 {
					cn = st.PeerCertificates[0].Subject.CommonName
					if len(st.VerifiedChains) == 0 {
						t.Error("client certificate not verified")
					}
				}
				if cn != tt.peerCN {
					t.Errorf("server saw client %q, want %q", cn, tt.peerCN)
				}
			})
		}
	}
}

func TestServerConfigNoCertificate(t *testing.T) {
	src := NewRenewingSource(func(context.Context) (*tls.Certificate, error) {
		return nil, errors.New("CA down")
	}, nil)
	_, cliErr, srvErr := handshake(t, ServerConfig(src, nil), &tls.Config{InsecureSkipVerify: true})
	if cliErr == nil || srvErr == nil || !strings.Contains(srvErr.Error(), "no certificate yet") {
		t.Fatalf("handshake without a certificate: client %v, server %v; want failure", cliErr, srvErr)
	}
}
