package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestGuardSlowloris(t *testing.T) {
	lim := testLimits
	lim.HeaderTimeout = 300 * time.Millisecond
	rec := &recorder{}
	rl := &rejectLog{}
	addr := serve(t, &Guard{Limits: lim, OnReject: rl.onReject}, rec)

	// trickle writes one byte of a never-ending header every 20ms.
	trickle := func(t *testing.T, c net.Conn) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			line := "X-Trickle: " + strings.Repeat("a", 1000)
			for i := 0; i < len(line); i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{line[i]}); err != nil {
					return
				}
			}
		}()
		t.Cleanup(func() { close(stop); wg.Wait() })
	}

	t.Run("first request", func(t *testing.T) {
		c := dial(t, addr)
		start := time.Now()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n")
		trickle(t, c)
		br := bufio.NewReader(c)
		res := readResponse(t, br)
		elapsed := time.Since(start)
		if res.status != http.StatusRequestTimeout || !strings.Contains(res.body, "request header timeout") {
			t.Fatalf("got %d %q", res.status, res.body)
		}
		if elapsed < 250*time.Millisecond || elapsed > 3*time.Second {
			t.Fatalf("cut off after %v, want about 300ms", elapsed)
		}
	})
	t.Run("keep-alive request", func(t *testing.T) {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
		if res := readResponse(t, br); res.status != 200 {
			t.Fatalf("first: %d", res.status)
		}
		time.Sleep(400 * time.Millisecond) // idle time does not count
		start := time.Now()
		io.WriteString(c, "GET /2 HTTP/1.1\r\n")
		trickle(t, c)
		res := readResponse(t, br)
		if elapsed := time.Since(start); res.status != 408 || elapsed > 3*time.Second {
			t.Fatalf("got %d after %v", res.status, elapsed)
		}
	})
	t.Run("silent connection", func(t *testing.T) {
		c := dial(t, addr)
		start := time.Now()
		b, err := io.ReadAll(c)
		if err != nil || len(b) != 0 {
			t.Fatalf("got %q, %v; want a quiet close", b, err)
		}
		if elapsed := time.Since(start); elapsed < 250*time.Millisecond || elapsed > 3*time.Second {
			t.Fatalf("closed after %v", elapsed)
		}
	})
	if n := rec.count(); n != 1 {
		t.Errorf("handler saw %d requests, want only the keep-alive one", n)
	}
	if got := rl.all(); len(got) != 2 {
		t.Errorf("OnReject calls %q, want two 408s", got)
	}
}

// TestGuardTLS runs the guard behind a TLS handshake, as the gateway does
// after ALPN chose http/1.1: requests still carry their TLS state.
func TestGuardTLS(t *testing.T) {
	cert := selfSigned(t)
	rec := &recorder{}
	rl := &rejectLog{}
	g := &Guard{Limits: testLimits, OnReject: rl.onReject}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rec, ConnContext: ConnContext, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(&tlsListener{Listener: ln, cfg: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}, g: g})
	}()
	t.Cleanup(func() { _ = srv.Close(); <-done })

	dialTLS := func() (net.Conn, *bufio.Reader) {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { _ = c.Close() })
		return c, bufio.NewReader(c)
	}
	c, br := dialTLS()
	io.WriteString(c, "GET /tls HTTP/1.1\r\nHost: a\r\n\r\n")
	if res := readResponse(t, br); res.status != 200 {
		t.Fatalf("got %d", res.status)
	}
	if got := rec.all(); len(got) != 1 || !got[0].TLS {
		t.Fatalf("handler saw %+v, want one request with its TLS state", got)
	}

	c, br = dialTLS()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
	if res := readResponse(t, br); res.status != 400 || !strings.Contains(res.body, "Content-Length with Transfer-Encoding") {
		t.Fatalf("got %d %q", res.status, res.body)
	}
	if rec.count() != 1 {
		t.Fatal("handler saw the rejected request")
	}
	if got := rl.all(); len(got) != 1 {
		t.Fatalf("OnReject calls %q", got)
	}
}

// tlsListener completes the handshake before guarding, like the gateway.
type tlsListener struct {
	net.Listener
	cfg *tls.Config
	g   *Guard
}

func (l *tlsListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, l.cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			continue
		}
		return l.g.Conn(tc), nil
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"a"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestGuardUpgrade proxies a protocol switch through httputil.ReverseProxy
// and checks that, once the proxy calls UpgradeFromContext, bytes that are
// not HTTP flow both ways; and that without the call the guard refuses
// them.
func TestGuardUpgrade(t *testing.T) {
	// The upstream answers 101 and echoes.
	backend := serve(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	target, _ := url.Parse("http://" + backend)

	for _, upgrade := range []bool{true, false} {
		var called, ok bool
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			ModifyResponse: func(res *http.Response) error {
				if upgrade && res.StatusCode == http.StatusSwitchingProtocols {
					called = true
					ok = UpgradeFromContext(res.Request.Context())
				}
				return nil
			},
			ErrorLog: log.New(io.Discard, "", 0),
		}
		addr := serve(t, &Guard{Limits: testLimits}, rp)
		c := dial(t, addr)
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade=%v: got %v, %v", upgrade, res, err)
		}
		// Not HTTP, and it would be refused as HTTP.
		payload := "\x00\x01\x02 POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
		io.WriteString(c, payload)
		got := make([]byte, len(payload))
		_, err = io.ReadFull(br, got)
		if upgrade {
			if !called || !ok {
				t.Fatalf("UpgradeFromContext called=%v ok=%v", called, ok)
			}
			if err != nil || string(got) != payload {
				t.Fatalf("echo: %q, %v", got, err)
			}
		} else if !strings.HasPrefix(string(got), "HTTP/1.1 400 Bad Request") {
			t.Fatalf("without the upgrade call: got %q, want the guard's 400", got)
		}
		c.Close()
	}
}

func TestPassthroughNotGuarded(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Passthrough(a) {
		t.Error("Passthrough reported a plain conn as guarded")
	}
	if UpgradeFromContext(context.Background()) {
		t.Error("UpgradeFromContext without a guarded conn reported true")
	}
	if ctx := ConnContext(context.Background(), a); ctx != context.Background() {
		t.Error("ConnContext changed the context of a plain conn")
	}
	g := GuardConn(a, Limits{}, nil)
	if !Passthrough(g) {
		t.Error("Passthrough did not find the guarded conn")
	}
}
