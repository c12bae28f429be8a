package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBudgetNeverOverdrawn: concurrent takers never hold more than the
// budget together, and everything comes back.
func TestBudgetNeverOverdrawn(t *testing.T) {
	b := NewBudget(10 * bodyChunk)
	var wg sync.WaitGroup
	var over sync.Once
	for range 16 {
		wg.Go(func() {
			for range 1000 {
				if b.TryAcquire(3 * bodyChunk) {
					if u := b.used.Load(); u > b.max {
						over.Do(func() { t.Errorf("budget overdrawn: %d > %d", u, b.max) })
					}
					b.Release(3 * bodyChunk)
				}
			}
		})
	}
	wg.Wait()
	if u := b.used.Load(); u != 0 {
		t.Fatalf("%d bytes still taken", u)
	}
}

// bodyServer answers each request with what Prepare made of its body:
// the status of a refusal, or the bytes received and whether they were
// buffered before the handler went on.
func bodyServer(t *testing.T, b *Bodies, limit int64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done, err := b.Prepare(w, r, limit, r.Header.Get("Content-Type") == "application/grpc")
		defer done()
		if err != nil {
			w.Header().Set("Connection", "close")
			http.Error(w, err.Reason, err.Status)
			return
		}
		buffered := b.Buffered()
		body, rerr := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %v %v", len(body), buffered > 0, rerr)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func rawRequest(t *testing.T, addr, raw string, wait time.Duration) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestBodiesPrepare: what Prepare does with each kind of body.
func TestBodiesPrepare(t *testing.T) {
	b := NewBodies(BodyConfig{Buffer: 64 << 10, Budget: 1 << 20, MinRate: 1024, Grace: 500 * time.Millisecond})
	srv := bodyServer(t, b, 256<<10)
	addr := srv.Listener.Addr().String()
	post := func(n int, ct string) (int, string) {
		resp, err := http.Post(srv.URL, ct, bytes.NewReader(make([]byte, n)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct {
		name   string
		do     func() (int, string)
		status int
		body   string
	}{
		{"small body is buffered", func() (int, string) { return post(10_000, "text/plain") }, 200, "10000 true <nil>"},
		{"body over the buffer bound streams", func() (int, string) { return post(100_000, "text/plain") }, 200, "100000 false <nil>"},
		{"body over the limit", func() (int, string) { return post(300_000, "text/plain") }, 413, ReasonBodyTooLarge},
		{"gRPC passes as it comes", func() (int, string) { return post(100, "application/grpc") }, 200, "100 false <nil>"},
		{"chunked body is buffered", func() (int, string) {
			return rawRequest(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 5*time.Second)
		}, 200, "5 true <nil>"},
		{"chunked body over the limit", func() (int, string) {
			big := strings.Repeat("a", 300<<10)
			return rawRequest(t, addr, fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(big), big), 5*time.Second)
		}, 413, ReasonBodyTooLarge},
		{"body below the minimum rate", func() (int, string) {
			return rawRequest(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\na", 5*time.Second)
		}, 408, ReasonBodyTooSlow},
		{"streamed body below the minimum rate", func() (int, string) {
			return rawRequest(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\na", 5*time.Second)
		}, 200, "1 false " + errTooSlow.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := tc.do()
			if status != tc.status || strings.TrimSpace(body) != tc.body {
				t.Fatalf("got %d %q, want %d %q", status, body, tc.status, tc.body)
			}
			if u := b.Buffered(); u != 0 {
				t.Fatalf("%d bytes still charged to the budget", u)
			}
		})
	}
}

// TestBodiesBudget: a declared body that does not fit the budget is
// refused with 503 before any of it is read; a chunked one when it grows
// past it.
func TestBodiesBudget(t *testing.T) {
	b := NewBodies(BodyConfig{Buffer: 1 << 20, Budget: 64 << 10})
	srv := bodyServer(t, b, 1<<20)
	addr := srv.Listener.Addr().String()
	if status, _ := rawRequest(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 5*time.Second); status != 503 {
		t.Fatalf("declared body past the budget: %d, want 503", status)
	}
	big := strings.Repeat("a", 100<<10)
	if status, _ := rawRequest(t, addr, fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(big), big), 5*time.Second); status != 503 {
		t.Fatalf("chunked body past the budget: %d, want 503", status)
	}
	if u := b.Buffered(); u != 0 {
		t.Fatalf("%d bytes still charged", u)
	}
}

// TestBodiesMinRateOverHTTP2: the minimum rate holds on an HTTP/2 stream
// too (a stalled stream is refused with 408, the connection lives on).
func TestBodiesMinRateOverHTTP2(t *testing.T) {
	b := NewBodies(BodyConfig{MinRate: 1024, Grace: 500 * time.Millisecond})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done, err := b.Prepare(w, r, 0, false)
		defer done()
		if err != nil {
			http.Error(w, err.Reason, err.Status)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := srv.Client()
	c.Timeout = 5 * time.Second
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("a")) }() // then nothing
	req, _ := http.NewRequest("POST", srv.URL, pr)
	req.ContentLength = 1000
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("no answer to a stalled HTTP/2 body: %v", err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("%s %d, want HTTP/2 408", resp.Proto, resp.StatusCode)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("408 after %v", d)
	}
	pw.Close()
	c.CloseIdleConnections()
}

// TestIsGRPC: only HTTP/2 with a gRPC content type is taken for a gRPC
// stream (whose body is not buffered); look-alike types are not.
func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "Application/GRPC; charset=utf-8": true,
		"application/grpcx": false, "application/grpc-web": false, "text/plain": false, "": false,
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.ProtoMajor = 2
		r.Header.Set("Content-Type", ct)
		if got := IsGRPC(r); got != want {
			t.Errorf("HTTP/2 %q: %v, want %v", ct, got, want)
		}
		r.ProtoMajor = 1
		if IsGRPC(r) {
			t.Errorf("HTTP/1.1 %q taken for gRPC", ct)
		}
	}
}

func TestBuffered(t *testing.T) {
	b := NewBodies(BodyConfig{Buffer: 256 << 10})
	payload := strings.Repeat("0123456789", 7000) // 70 000 bytes: three chunks
	r := httptest.NewRequest("POST", "/", strings.NewReader(payload))
	w := httptest.NewRecorder()
	done, err := b.Prepare(w, r, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	chunks, ok := Buffered(r.Body)
	if !ok || len(chunks) != 3 {
		t.Fatalf("Buffered = %d chunks, %v", len(chunks), ok)
	}
	var got []byte
	for _, c := range chunks {
		got = append(got, c...)
	}
	if string(got) != payload {
		t.Fatalf("Buffered gave %d bytes, not the body", len(got))
	}
	// The body still reads whole afterwards: nothing was consumed.
	if all, _ := io.ReadAll(r.Body); string(all) != payload {
		t.Fatalf("body after Buffered: %d bytes", len(all))
	}
	if _, ok := Buffered(r.Body); ok {
		t.Error("Buffered of a body already read")
	}
	done()
	if _, ok := Buffered(r.Body); ok {
		t.Error("Buffered of a released body")
	}
	if _, ok := Buffered(strings.NewReader("x")); ok {
		t.Error("Buffered of a body Prepare did not buffer")
	}
}
