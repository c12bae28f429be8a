package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

var testLimits = Limits{
	MaxHeaderBytes: 2048,
	MaxHeaders:     20,
	MaxURLBytes:    256,
	MaxBodyBytes:   1 << 20,
	HeaderTimeout:  5 * time.Second,
}

type rejectCase struct {
	name   string
	raw    string
	status int
	reason string // substring of the answer and of the OnReject reason
}

// rejectCases are heads the guard must answer itself: net/http never sees
// them.
var rejectCases = []rejectCase{
	// Framing ambiguity (request smuggling).
	{"CL then TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Content-Length with Transfer-Encoding"},
	{"TE then CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, "Content-Length with Transfer-Encoding"},
	{"CL with unknown TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\nhello", 400, "Content-Length with Transfer-Encoding"},
	{"duplicate equal CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, "more than one Content-Length"},
	{"duplicate different CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\nhello!", 400, "more than one Content-Length"},
	{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400, "more than one Content-Length"},
	{"CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400, "invalid Content-Length"},
	{"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "invalid Content-Length"},
	{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400, "invalid Content-Length"},
	{"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400, "invalid Content-Length"},
	{"CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400, "invalid Content-Length"},
	{"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, "invalid Content-Length"},
	{"TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400, "unsupported Transfer-Encoding"},
	{"TE chunked twice in list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400, "unsupported Transfer-Encoding"},
	{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400, "unsupported Transfer-Encoding"},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400, "unsupported Transfer-Encoding"},
	{"TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", 400, "control character"},
	{"TE repeated", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "more than one Transfer-Encoding"},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding in an HTTP/1.0 request"},
	{"trailer announces CL", "POST / HTTP/1.1\r\nHost: a\r\nTrailer: X-A, Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "names a framing field"},

	// Host.
	{"missing Host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, "missing Host header"},
	{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host header"},
	{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host header"},
	{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, "invalid Host header"},
	{"Host bad port", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400, "invalid Host header"},
	{"Host empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400, "invalid Host header"},
	{"Host IPv4 in brackets", "GET / HTTP/1.1\r\nHost: [127.0.0.1]\r\n\r\n", 400, "invalid Host header"},
	{"Host differs from absolute target", "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n", 400, "does not match the request target"},

	// Header syntax.
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  2\r\n\r\n", 400, "obsolete line folding"},
	{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n", 400, "obsolete line folding"},
	{"space before first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obsolete line folding"},
	{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace before colon"},
	{"tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 0\r\n\r\n", 400, "whitespace before colon"},
	{"underscore in name", "GET / HTTP/1.1\r\nHost: a\r\nX_Ward_Peer_Id: spiffe://x\r\n\r\n", 400, "underscore"},
	{"space inside name", "GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n", 400, "invalid header name"},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400, "control character"},
	{"NUL in name", "GET / HTTP/1.1\r\nHost: a\r\nX-\x00A: 1\r\n\r\n", 400, "control character"},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n", 400, "control character"},
	{"CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400, "CR without LF"},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", 400, "no colon"},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", 400, "empty field name"},

	// Line endings.
	{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400, "line ending without CR"},
	{"bare LF in header", "GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n", 400, "line ending without CR"},
	{"bare LF at end", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "line ending without CR"},
	{"bare CR", "GET / HTTP/1.1\r\nHost: a\rX-A: 1\r\n\r\n", 400, "CR without LF"},
	{"empty line first", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "empty line before request line"},

	// Request line.
	{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line"},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line"},
	{"no version", "GET /\r\nHost: a\r\n\r\n", 400, "malformed request line"},
	{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "invalid HTTP version"},
	{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"},
	{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"},
	{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"},
	{"h2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2 with prior knowledge"},
	{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method"},
	{"TLS on plaintext port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "control character"},

	// Request target.
	{"NUL in target", "GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad character"},
	{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad character"},
	{"raw non-ASCII", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad character"},
	{"bad escape", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad percent-encoding"},
	{"short escape", "GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad percent-encoding"},
	{"bad escape in query", "GET /a?b=%g0 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad percent-encoding"},
	{"asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"},
	{"authority-form with GET", "GET a.example:80 HTTP/1.1\r\nHost: a.example:80\r\n\r\n", 400, "invalid request target"},
	{"CONNECT origin-form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"},
	{"CONNECT without port", "CONNECT a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "bad authority"},
	{"absolute with userinfo", "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad authority"},
	{"absolute ftp", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"},

	// Limits (testLimits).
	{"target too long", "GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, "request target too long"},
	{"request line too long", "GET /" + strings.Repeat("a", 3000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, "request line too long"},
	{"head too large", "GET / HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("a", 3000) + "\r\n\r\n", 431, "request header too large"},
	{"too many fields", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: 1\r\n", 20) + "\r\n", 431, "too many header fields"},
	{"body too large", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n", 413, "request body too large"},
}

func TestGuardRejects(t *testing.T) {
	rec := &recorder{}
	rl := &rejectLog{}
	addr := serve(t, &Guard{Limits: testLimits, OnReject: rl.onReject}, rec)
	for _, tc := range rejectCases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rl.all())
			c := dial(t, addr)
			if _, err := io.WriteString(c, tc.raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			res := readResponse(t, br)
			if res.status != tc.status || !strings.Contains(res.body, tc.reason) {
				t.Errorf("got %d %q, want %d with %q", res.status, res.body, tc.status, tc.reason)
			}
			expectClosed(t, br)
			if n := rec.count(); n != 0 {
				t.Fatalf("handler saw %d requests: %+v", n, rec.all())
			}
			got := rl.all()
			if len(got) != before+1 || !strings.HasPrefix(got[before], fmt.Sprint(tc.status)) ||
				!strings.Contains(got[before], tc.reason) {
				t.Errorf("OnReject calls %q, want one with %d %q", got[before:], tc.status, tc.reason)
			}
		})
	}
}

func TestGuardRejectsIncompleteHead(t *testing.T) {
	rec := &recorder{}
	addr := serve(t, &Guard{Limits: testLimits}, rec)
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res := readResponse(t, br)
	if res.status != 400 || !strings.Contains(res.body, "inside the request head") {
		t.Errorf("got %d %q", res.status, res.body)
	}
	if rec.count() != 0 {
		t.Errorf("handler saw %+v", rec.all())
	}
}

type passCase struct {
	name string
	raw  string
	want []seen // Method, URI, Host, Body and (if set) Trailer of each request
}

var passCases = []passCase{
	{"GET", "GET /a/b?c=d&e=%2F HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\nAccept: */*\r\n\r\n",
		[]seen{{Method: "GET", URI: "/a/b?c=d&e=%2F", Host: "example.com"}}},
	{"POST with Content-Length", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
		[]seen{{Method: "POST", URI: "/p", Host: "a", Body: "hello"}}},
	{"POST chunked with extensions and trailer",
		"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
			"5;ext=1;q=\"x y\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
		[]seen{{Method: "POST", URI: "/c", Host: "a", Body: "hello world", Trailer: http.Header{"X-Sum": {"42"}}}}},
	{"chunked in capitals", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
		[]seen{{Method: "POST", URI: "/c", Host: "a", Body: "0123456789"}}},
	{"pipelined", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\nGET /4 HTTP/1.1\r\nHost: a\r\n\r\n",
		[]seen{{Method: "GET", URI: "/1", Host: "a"}, {Method: "POST", URI: "/2", Host: "a", Body: "abc"},
			{Method: "POST", URI: "/3", Host: "a", Body: "xyz"}, {Method: "GET", URI: "/4", Host: "a"}}},
	{"HTTP/1.0 without Host", "GET /old HTTP/1.0\r\n\r\n", []seen{{Method: "GET", URI: "/old"}}},
	{"absolute-form", "GET http://Example.com:8080/x?y HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
		[]seen{{Method: "GET", URI: "http://Example.com:8080/x?y", Host: "Example.com:8080"}}},
	{"absolute-form without path", "GET http://a HTTP/1.1\r\nHost: a\r\n\r\n", []seen{{Method: "GET", URI: "http://a", Host: "a"}}},
	{"OPTIONS asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", []seen{{Method: "OPTIONS", URI: "*", Host: "a"}}},
	{"IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", []seen{{Method: "GET", URI: "/", Host: "[::1]:8080"}}},
	{"value with obs-text and tabs", "GET / HTTP/1.1\r\nHost: a\r\nX-Name:\tcaf\xc3\xa9 \t\r\n\r\n", []seen{{Method: "GET", URI: "/", Host: "a"}}},
	{"Content-Length zero", "POST /z HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", []seen{{Method: "POST", URI: "/z", Host: "a"}}},
	{"Content-Length leading zeros", "POST /z HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc", []seen{{Method: "POST", URI: "/z", Host: "a", Body: "abc"}}},
	{"custom method", "PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", []seen{{Method: "PURGE", URI: "/x", Host: "a"}}},
	{"CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", []seen{{Method: "CONNECT", URI: "a.example:443", Host: "a.example:443"}}},
}

func TestGuardPasses(t *testing.T) {
	for _, tc := range passCases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			rl := &rejectLog{}
			addr := serve(t, &Guard{Limits: testLimits, OnReject: rl.onReject}, rec)
			c := dial(t, addr)
			if _, err := io.WriteString(c, tc.raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			for i, w := range tc.want {
				res := readResponse(t, br)
				want := fmt.Sprintf("ok %s %s %d", w.Method, w.URI, len(w.Body))
				if res.status != 200 || res.body != want {
					t.Fatalf("response %d: got %d %q, want 200 %q", i, res.status, res.body, want)
				}
			}
			got := rec.all()
			if len(got) != len(tc.want) {
				t.Fatalf("handler saw %d requests, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Method != w.Method || g.URI != w.URI || g.Host != w.Host || g.Body != w.Body || g.BodyErr != nil {
					t.Errorf("request %d: handler saw %+v, want %+v", i, g, w)
				}
				for k, v := range w.Trailer {
					if g.Trailer.Get(k) != v[0] {
						t.Errorf("request %d: trailer %s = %q, want %q", i, k, g.Trailer.Get(k), v[0])
					}
				}
			}
			if r := rl.all(); len(r) != 0 {
				t.Errorf("OnReject called: %q", r)
			}
		})
	}
}

func TestGuardKeepAlive(t *testing.T) {
	rec := &recorder{}
	addr := serve(t, &Guard{Limits: testLimits}, rec)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for i := range 5 {
		fmt.Fprintf(c, "POST /k%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", i, i, strings.Repeat("x", i))
		res := readResponse(t, br)
		if want := fmt.Sprintf("ok POST /k%d %d", i, i); res.body != want {
			t.Fatalf("got %q, want %q", res.body, want)
		}
	}
	if n := rec.count(); n != 5 {
		t.Fatalf("handler saw %d requests", n)
	}
}

func TestGuardExpectContinue(t *testing.T) {
	rec := &recorder{}
	addr := serve(t, &Guard{Limits: testLimits}, rec)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "PUT /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if res := readResponse(t, br); res.status != 100 {
		t.Fatalf("got %d, want 100 Continue", res.status)
	}
	io.WriteString(c, "hello")
	if res := readResponse(t, br); res.status != 200 || res.body != "ok PUT /e 5" {
		t.Fatalf("got %d %q", res.status, res.body)
	}
	if got := rec.all(); len(got) != 1 || got[0].Body != "hello" {
		t.Fatalf("handler saw %+v", got)
	}
}

func TestGuardLargeBodies(t *testing.T) {
	rec := &recorder{}
	addr := serve(t, &Guard{Limits: testLimits}, rec)
	const size = 900 << 10
	payload := strings.Repeat("0123456789abcdef", size/16)

	t.Run("Content-Length", func(t *testing.T) {
		c := dial(t, addr)
		go func() {
			fmt.Fprintf(c, "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
			for i := 0; i < size; i += 7000 { // in odd pieces
				io.WriteString(c, payload[i:min(i+7000, size)])
			}
		}()
		res := readResponse(t, bufio.NewReader(c))
		if want := fmt.Sprintf("ok POST /big %d", size); res.body != want {
			t.Fatalf("got %d %q", res.status, res.body)
		}
	})
	t.Run("chunked", func(t *testing.T) {
		c := dial(t, addr)
		go func() {
			io.WriteString(c, "POST /bigc HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
			for i := 0; i < size; i += 5000 {
				piece := payload[i:min(i+5000, size)]
				fmt.Fprintf(c, "%x\r\n%s\r\n", len(piece), piece)
			}
			io.WriteString(c, "0\r\n\r\n")
		}()
		res := readResponse(t, bufio.NewReader(c))
		if want := fmt.Sprintf("ok POST /bigc %d", size); res.body != want {
			t.Fatalf("got %d %q", res.status, res.body)
		}
	})
	got := rec.all()
	if len(got) != 2 || got[0].Body != payload || got[1].Body != payload {
		t.Fatalf("handler saw %d requests or altered bodies", len(got))
	}
}

// TestGuardPipelinedReject checks that a bad request pipelined behind a good
// one is answered after the good one's response, not in its middle.
func TestGuardPipelinedReject(t *testing.T) {
	for _, first := range []string{
		"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	} {
		rec := &recorder{}
		addr := serve(t, &Guard{Limits: testLimits}, rec)
		c := dial(t, addr)
		io.WriteString(c, first+"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
		br := bufio.NewReader(c)
		if res := readResponse(t, br); res.status != 200 || !strings.HasPrefix(res.body, "ok ") {
			t.Fatalf("first response: %d %q", res.status, res.body)
		}
		if res := readResponse(t, br); res.status != 400 || !strings.Contains(res.body, "Content-Length with Transfer-Encoding") {
			t.Fatalf("second response: %d %q", res.status, res.body)
		}
		expectClosed(t, br)
		if n := rec.count(); n != 1 {
			t.Fatalf("handler saw %d requests", n)
		}
	}
}

// chunkPrefix starts every chunkCases request.
const chunkPrefix = "POST /chunky HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

// chunkCases are chunked bodies that break their framing after a valid head.
var chunkCases = []struct {
	name   string
	body   string
	status int
	reason string
}{
	{"bad size", "zz\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"},
	{"empty size", "\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"},
	{"space after size", "5 \r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"},
	{"bare LF after size", "5\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"},
	{"17 hex digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"},
	{"data longer than size", "5\r\nhello!\r\n0\r\n\r\n", 400, "missing CRLF"},
	{"bare LF after data", "5\r\nhello\n0\r\n\r\n", 400, "missing CRLF"},
	{"NUL in extension", "5;a\x00\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk extension"},
	{"chunk too large", "200000\r\n", 413, "request body too large"},
	{"framing field in trailer", "0\r\nContent-Length: 5\r\n\r\n", 400, "framing field in trailer"},
	{"folded trailer", "0\r\nX-A: 1\r\n 2\r\n\r\n", 400, "obsolete line folding in trailer"},
	{"underscore in trailer", "0\r\nX_A: 1\r\n\r\n", 400, "underscore in trailer"},
	{"space before colon in trailer", "0\r\nX-A : 1\r\n\r\n", 400, "invalid trailer field name"},
	{"bare LF in trailer", "0\r\nX-A: 1\n\r\n", 400, "control character in trailer"},
	{"bad final CRLF", "0\r\n\rX", 400, "missing CRLF"},
	{"too much overhead", strings.Repeat("1;"+strings.Repeat("e", 600)+"\r\nx\r\n", 40) + "0\r\n\r\n", 400, "too much non-data"},
	{"trailer too large", "0\r\nX-A: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431, "trailer too large"},
}

func TestGuardBadChunking(t *testing.T) {
	cases := chunkCases
	rec := &recorder{}
	rl := &rejectLog{}
	addr := serve(t, &Guard{Limits: testLimits, OnReject: rl.onReject}, rec)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.count()
			c := dial(t, addr)
			go io.WriteString(c, chunkPrefix+tc.body)
			br := bufio.NewReader(c)
			res := readResponse(t, br)
			if res.status != tc.status || !strings.Contains(res.body, tc.reason) {
				t.Errorf("got %d %q, want %d %q", res.status, res.body, tc.status, tc.reason)
			}
			expectClosed(t, br)
			got := rec.all()
			if len(got) != before+1 {
				t.Fatalf("handler saw %d requests", len(got)-before)
			}
			var fe *FramingError
			if err := got[before].BodyErr; !errors.As(err, &fe) || fe.Status != tc.status {
				t.Errorf("body error %v, want a FramingError %d", err, tc.status)
			}
		})
	}
	if n := len(rl.all()); n != len(cases) {
		t.Errorf("OnReject called %d times, want %d", n, len(cases))
	}
}

// TestNetHTTPBaseline documents why the guard exists: net/http alone
// accepts these ambiguous requests, and its handler cannot tell.
func TestNetHTTPBaseline(t *testing.T) {
	cases := []struct {
		name, raw string
		body      string // what the handler reads
	}{
		// net/http drops Content-Length and reads the chunked body: a
		// front end that honours Content-Length would see a different
		// request boundary.
		{"CL with TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "x"},
		{"duplicate equal CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "x"},
		{"underscore in name", "GET / HTTP/1.1\r\nHost: a\r\nX_Ward_Peer_Id: spiffe://evil\r\n\r\n", ""},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			addr := serve(t, nil, rec)
			c := dial(t, addr)
			io.WriteString(c, tc.raw)
			res := readResponse(t, bufio.NewReader(c))
			got := rec.all()
			if res.status != 200 || len(got) != 1 || got[0].Body != tc.body {
				t.Fatalf("net/http alone: %d, handler saw %+v", res.status, got)
			}
			if tc.name == "CL with TE" && got[0].Header.Get("Content-Length") != "" {
				t.Errorf("expected net/http to hide the Content-Length")
			}
		})
	}
}
