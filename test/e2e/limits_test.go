package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// uploadResources add to edgeResources an anonymous route, /upload, that
// takes POSTs for orders.
const uploadResources = `---
apiVersion: ward/v1
kind: Route
metadata: {name: upload}
spec:
  pathPrefix: /upload
  service: orders
  auth: {apiKey: none, user: anonymous}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: upload-callers}
spec:
  target: orders
  rules:
    - from: [gateway/*]
      methods: [POST]
      paths: ["/upload", "/upload/*"]
`

// fromSource returns a client of the gateway whose connections come from
// the loopback address src.
func (e *edgeSetup) fromSource(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}, DialContext: d.DialContext, ForceAttemptHTTP2: true}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestSlowBodiesFromOneSourceDoNotStarveAnother (issue 12 finding 8) runs
// the real gateway and sidecar: 12 POSTs from 127.0.0.2 whose bodies
// trickle in (one byte of a declared 100000) take at most the per-source
// cap (8) of the gateway's slots, the rest are refused 429 at once, the 8
// get 408 once under the minimum rate, and none of them reaches the app;
// meanwhile a POST from 127.0.0.3 is served at once.
func TestSlowBodiesFromOneSourceDoNotStarveAnother(t *testing.T) {
	e := newEdgeSetup(t)
	conf, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, append(conf, uploadResources...), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := e.startGateway("--max-requests-per-source", "8", "--body-grace", "3s", "--body-min-rate", "1KiB")
	_, port, _ := net.SplitHostPort(gw)
	other := e.fromSource("127.0.0.3")
	post := func() (*http.Response, error) {
		resp, err := other.Post("https://localhost:"+port+"/upload", "text/plain", strings.NewReader("hello"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	// The sidecar reloads the file within a second or so: wait until the
	// upload route is served end to end.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if resp, err := post(); err == nil && resp.StatusCode == 200 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("upload route not served: %v %v", resp, err)
		}
	}
	drain(e.seen)

	const slow = 12
	conns := make([]*tls.Conn, slow)
	for i := range conns {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", gw, &tls.Config{RootCAs: e.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\na")
		conns[i] = c
	}
	start := time.Now()
	resp, err := post()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST from another source while 127.0.0.2 trickles: %v %v", resp, err)
	}
	if d := time.Since(start); d > 2*time.Second { // the slow ones are held for 3s
		t.Errorf("POST from another source took %v", d)
	}
	statuses := make([]int, slow)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}
		})
	}
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[http.StatusTooManyRequests] != slow-8 || count[http.StatusRequestTimeout] != 8 {
		t.Fatalf("slow POSTs from one source got %v, want 4 x 429 and 8 x 408", statuses)
	}
	for {
		select {
		case r := <-e.seen:
			if r.ContentLength == 100000 {
				t.Fatalf("the app saw a slow request")
			}
			continue
		default:
		}
		break
	}
}

// drain empties the channel of requests the app saw.
func drain(c chan *http.Request) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// TestGatewayBodyLimitsDocWalkthrough runs the block of docs/gateway.md's
// "Body limits and budgets" as written and checks what the page says it
// shows: a small body passes, one past the Route's limit is 413, and of
// five slow uploads from one address four are held until 408 and the
// fifth is 429 at once.
func TestGatewayBodyLimitsDocWalkthrough(t *testing.T) {
	need(t, "curl", "python3", "bash")
	block := docBlock(t, "docs/gateway.md", "## Body limits and budgets")
	text := runWalkthrough(t, t.TempDir(), block)
	for _, want := range []string{"got 10000 bytes\n", "413\n", "      4 408\n      1 429\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
