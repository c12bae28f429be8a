package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is what the recording handler saw of one request.
type seen struct {
	Method, URI, Host, Proto string
	Body                     string
	Header, Trailer          http.Header
	BodyErr                  error
	TLS                      bool
}

// recorder is a handler that records every request it sees. It reads the
// whole body first (as Ward's forwarding handler does for chunked bodies)
// and answers a FramingError with its status.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, seen{
		Method: r.Method, URI: r.RequestURI, Host: r.Host, Proto: r.Proto,
		Body: string(body), Header: r.Header.Clone(), Trailer: r.Trailer.Clone(), BodyErr: err,
		TLS: r.TLS != nil && r.TLS.HandshakeComplete,
	})
	rec.mu.Unlock()
	if err != nil {
		var fe *FramingError
		if errors.As(err, &fe) {
			http.Error(w, fe.Reason, fe.Status)
			return
		}
		http.Error(w, "body read error", http.StatusBadRequest)
		return
	}
	if r.URL.Path == "/slow" {
		time.Sleep(100 * time.Millisecond) // keeps the response in flight while the next request waits
	}
	fmt.Fprintf(w, "ok %s %s %d", r.Method, r.RequestURI, len(body))
}

func (rec *recorder) all() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

// rejectLog records OnReject calls.
type rejectLog struct {
	mu  sync.Mutex
	got []string
}

func (l *rejectLog) onReject(_ net.Conn, status int, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, fmt.Sprintf("%d %s", status, reason))
}

func (l *rejectLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// serve runs an http.Server with h on a loopback listener, through g when g
// is not nil, and returns its address.
func serve(t testing.TB, g *Guard, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if g != nil {
		ln = g.Listener(ln)
	}
	srv := &http.Server{
		Handler:     h,
		ConnContext: ConnContext,
		// Let OPTIONS * reach the handler, so the test sees it passed.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return addr
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type response struct {
	status int
	body   string
}

// readResponse reads one response from br.
func readResponse(t testing.TB, br *bufio.Reader) response {
	t.Helper()
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	_ = res.Body.Close()
	return response{res.StatusCode, strings.TrimSpace(string(b))}
}

// expectClosed checks that the server closed the connection, with nothing
// more to read.
func expectClosed(t testing.TB, br *bufio.Reader) {
	t.Helper()
	b, err := io.ReadAll(br)
	if err != nil && !isReset(err) {
		t.Fatalf("after the response: %v", err)
	}
	if len(b) > 0 {
		t.Fatalf("unexpected bytes after the response: %q", b)
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && strings.Contains(oe.Err.Error(), "reset")
}
