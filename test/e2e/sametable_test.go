package e2e

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/proxy/proxytest"
)

// answer is what a proxy answered, without what differs per request (the
// request id).
type answer struct {
	status      int
	reason      string // X-Ward-Deny-Reason
	contentType string
	body        string
}

var requestIDInBody = regexp.MustCompile(`"request_id":"[0-9a-f]{24}"`)

func answerOf(resp *http.Response) answer {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return answer{resp.StatusCode, resp.Header.Get("X-Ward-Deny-Reason"), resp.Header.Get("Content-Type"),
		requestIDInBody.ReplaceAllString(string(b), `"request_id":"…"`)}
}

// rawAnswer sends raw bytes over a new connection and reads the answer.
func rawAnswer(t *testing.T, dial func() *tls.Conn, raw string) answer {
	t.Helper()
	c := dial()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return answer{body: "read: " + err.Error()}
	}
	return answerOf(resp)
}

// TestHostileTableAlikeAtGatewayAndSidecar (issue 13): one table of
// hostile requests (the shared hygiene table, smuggling shapes, path
// encodings, forged Ward headers) is sent, over HTTP/1.1 and where it
// can be framed over HTTP/2, to the real gateway and to the real orders
// sidecar behind it (as the gateway's own peer, so that only hygiene and
// paths differ from an allowed call). Every row is answered alike by both,
// and over both protocols: the same status, reason, content type and JSON
// body, and none reaches the app.
func TestHostileTableAlikeAtGatewayAndSidecar(t *testing.T) {
	e := newEdgeSetup(t)
	key := e.apiKey("shop", "orders")
	gw := e.startGateway()
	e.waitReady(gw, key)
	creds := [][2]string{{"X-Api-Key", key}, {"Authorization", "Bearer " + e.jwt("alice", "orders:read", 5*time.Minute)}}

	// The gateway's SVID, persisted in its data directory, is a peer the
	// orders sidecar admits.
	cert, err := tls.LoadX509KeyPair(filepath.Join(e.dir, "edge1", "svid.pem"), filepath.Join(e.dir, "edge1", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	peerTLS := func(proto string) *tls.Config {
		// The test checks the server's hygiene, not its identity.
		return &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{proto}} //nolint:gosec // test peer
	}
	type target struct {
		name   string
		host   string
		fields [][2]string // credentials the target needs for an allowed call
		dialH1 func() *tls.Conn
		h2     *http.Transport
		addr   string
	}
	dial := func(addr string, cfg *tls.Config) func() *tls.Conn {
		return func() *tls.Conn {
			c, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	edgeTLS := func(proto string) *tls.Config {
		return &tls.Config{RootCAs: e.roots, ServerName: "localhost", NextProtos: []string{proto}}
	}
	_, gwPort, _ := net.SplitHostPort(gw)
	targets := []target{
		{"gateway", "localhost", creds, dial(gw, edgeTLS("http/1.1")), &http.Transport{TLSClientConfig: edgeTLS("h2"), ForceAttemptHTTP2: true}, "localhost:" + gwPort},
		{"sidecar", "orders", nil, dial(e.ordersIn, peerTLS("http/1.1")), &http.Transport{TLSClientConfig: peerTLS("h2"), ForceAttemptHTTP2: true}, e.ordersIn},
	}
	for _, tg := range targets {
		t.Cleanup(tg.h2.CloseIdleConnections)
	}

	type row struct {
		name   string
		path   string
		fields [][2]string
		raw    string // an HTTP/1.1 head after the request line and Host, "" for none
		want   int
		h2     bool // can be framed over HTTP/2 too
	}
	var rows []row
	for _, h := range proxytest.HostileRequests() {
		rows = append(rows, row{name: h.Name, path: "/orders/7" + h.Path, fields: h.Header, want: h.Status, h2: true})
	}
	rows = append(rows,
		row{name: "Content-Length and Transfer-Encoding", path: "/orders/7", raw: "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", want: 400},
		row{name: "two Content-Lengths", path: "/orders/7", raw: "Content-Length: 4\r\nContent-Length: 5\r\n", want: 400},
		row{name: "obs-fold", path: "/orders/7", raw: "X-A: a\r\n b\r\n", want: 400},
		row{name: "encoded slash", path: "/orders/a%2Fb", want: 400, h2: true},
		row{name: "dot segments above the root", path: "/orders/%2e%2e/%2e%2e/admin", want: 400, h2: true},
		row{name: "double encoding", path: "/orders/%252e%252e/admin", want: 400, h2: true},
	)
	for _, rw := range rows {
		var got []answer
		for _, tg := range targets {
			fields := append(append([][2]string{}, tg.fields...), rw.fields...)
			h := head(rw.path, tg.host, fields)
			if rw.raw != "" {
				h = strings.TrimSuffix(h, "\r\n") + rw.raw + "\r\n"
			}
			a := rawAnswer(t, tg.dialH1, h)
			if a.status != rw.want {
				t.Errorf("%s at the %s over HTTP/1.1: %+v, want %d", rw.name, tg.name, a, rw.want)
			}
			got = append(got, a)
			if rw.h2 {
				req, _ := http.NewRequest("GET", "https://"+tg.addr+rw.path, nil)
				req.Host = tg.host
				resp, err := tg.h2.RoundTrip(withFields(req, fields))
				if err != nil {
					t.Fatalf("%s at the %s over HTTP/2: %v", rw.name, tg.name, err)
				}
				a := answerOf(resp)
				if a.status != rw.want || resp.ProtoMajor != 2 {
					t.Errorf("%s at the %s over HTTP/2: %+v, want %d", rw.name, tg.name, a, rw.want)
				}
				if prev := got[len(got)-1]; a != prev {
					t.Errorf("%s at the %s: HTTP/1.1 answered %+v, HTTP/2 %+v", rw.name, tg.name, prev, a)
				}
				got = append(got, a)
			}
		}
		// gateway's answers first, then the sidecar's, in the same order.
		half := len(got) / 2
		for i := range half {
			if got[i] != got[half+i] {
				t.Errorf("%s: the gateway answered %+v, the sidecar %+v", rw.name, got[i], got[half+i])
			}
		}
		noneSeen(t, e.seen, rw.name)
	}

	// Forged Ward headers are stripped by both, whatever their spelling:
	// the app sees the user the gateway verified (alice), or, for a peer
	// that sent no identity token, none.
	for _, f := range proxytest.Forged {
		for i, tg := range targets {
			a := rawAnswer(t, tg.dialH1, head("/orders/7", tg.host, append(append([][2]string{}, tg.fields...), f)))
			want := []string{"alice", ""}[i]
			if tg.name == "sidecar" && a.status == http.StatusForbidden {
				// orders' policy wants a user with orders:read: the
				// forged header did not provide one.
				noneSeen(t, e.seen, "a forged user at the sidecar")
				continue
			}
			if a.status != http.StatusOK {
				t.Fatalf("forged %s through the %s: %+v", f[0], tg.name, a)
			}
			if r := <-e.seen; r.Header.Get("X-Ward-User") != want {
				t.Errorf("forged %s through the %s: the app saw user %q, want %q", f[0], tg.name, r.Header.Get("X-Ward-User"), want)
			}
		}
	}
}
