package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// benchRequest is a typical 300-byte GET.
var benchRequest = "GET /api/v1/orders/12345?expand=items&fields=id,total HTTP/1.1\r\n" +
	"Host: orders.example.internal:8443\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) ward-bench/1.0\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl\r\n" +
	"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
	"\r\n"

// BenchmarkGuard measures keep-alive GETs through a real http.Server on
// loopback, with and without the guard. Compare the two ns/op.
func BenchmarkGuard(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	})
	for _, guarded := range []bool{false, true} {
		name := "net-http"
		var g *Guard
		if guarded {
			name, g = "guard", &Guard{}
		}
		b.Run(name, func(b *testing.B) {
			addr := serve(b, g, h)
			c := dial(b, addr)
			br := bufio.NewReader(c)
			b.SetBytes(int64(len(benchRequest)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := io.WriteString(c, benchRequest); err != nil {
					b.Fatal(err)
				}
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
}

// BenchmarkGuardParse measures the validation alone, on an in-memory
// connection that repeats the request: the guard's own cost per request.
func BenchmarkGuardParse(b *testing.B) {
	c := (&Guard{}).Conn(&loopConn{memConn: memConn{chunk: len(benchRequest)}, data: []byte(benchRequest)})
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(benchRequest)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := c.Read(buf); err != nil || n != len(benchRequest) {
			b.Fatal(n, err)
		}
	}
}

// loopConn serves data again and again.
type loopConn struct {
	memConn
	data []byte
}

func (l *loopConn) Read(p []byte) (int, error) {
	if len(l.memConn.data) == 0 {
		l.memConn.data = l.data
	}
	return l.memConn.Read(p)
}

// BenchmarkCheck measures Guard.Check, the header rules applied to an
// HTTP/2 request (the same fields as benchRequest); it should not allocate.
func BenchmarkCheck(b *testing.B) {
	g := &Guard{}
	r := &http.Request{Method: "GET", RequestURI: "/api/v1/orders/12345?expand=items&fields=id,total", Host: "orders.example.internal:8443",
		Proto: "HTTP/2.0", ProtoMajor: 2, Header: http.Header{
			"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) ward-bench/1.0"},
			"Accept":          {"application/json"},
			"Accept-Encoding": {"gzip, deflate, br"},
			"Authorization":   {"Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"},
			"Traceparent":     {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		}}
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Check(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBodiesPrepare: the cost of receiving a 4 KiB body whole into
// pooled buffers under the budget and the minimum rate.
func BenchmarkBodiesPrepare(b *testing.B) {
	bodies := NewBodies(BodyConfig{})
	payload := make([]byte, 4<<10)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(payload))
		done, err := bodies.Prepare(w, r, 0, false)
		if err != nil {
			b.Fatal(err)
		}
		done()
	}
}

// BenchmarkSourceCap: taking and releasing a per-source slot.
func BenchmarkSourceCap(b *testing.B) {
	c := NewSourceCap(64)
	b.ReportAllocs()
	for b.Loop() {
		release, ok := c.Acquire("192.0.2.7")
		if !ok {
			b.Fatal("refused")
		}
		release()
	}
}
