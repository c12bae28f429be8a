package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// memConn serves data in reads of at most chunk bytes, then io.EOF, and
// records what is written to it.
type memConn struct {
	data  []byte
	chunk int
	out   bytes.Buffer
}

func (m *memConn) Read(p []byte) (int, error) {
	if len(m.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(m.data), m.chunk)
	copy(p, m.data[:n])
	m.data = m.data[n:]
	return n, nil
}

func (m *memConn) Write(p []byte) (int, error)      { return m.out.Write(p) }
func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return memAddr{} }
func (m *memConn) RemoteAddr() net.Addr             { return memAddr{} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }
func (memAddr) Network() string                     { return "mem" }
func (memAddr) String() string                      { return "mem" }

type memAddr struct{}

var fuzzLimits = Limits{MaxHeaderBytes: 1024, MaxHeaders: 16, MaxURLBytes: 256, MaxBodyBytes: 1 << 16, HeaderTimeout: time.Minute}

type guardRun struct {
	passed   []byte
	rejects  []int // statuses given to OnReject
	inBody   bool  // the stream ended inside a body, or a body broke its framing
	answer   []byte
	finalErr error
}

// runGuard feeds data to a guarded connection in reads of chunk bytes,
// reads it readSize bytes at a time and collects what the guard passes on.
func runGuard(data []byte, chunk, readSize int) guardRun {
	var run guardRun
	mc := &memConn{data: data, chunk: chunk}
	g := &Guard{Limits: fuzzLimits, OnReject: func(_ net.Conn, status int, _ string) {
		run.rejects = append(run.rejects, status)
	}}
	c := g.Conn(mc).(*Conn)
	buf := make([]byte, readSize)
	for {
		n, err := c.Read(buf)
		run.passed = append(run.passed, buf[:n]...)
		if err != nil {
			run.finalErr = err
			break
		}
	}
	var fe *FramingError
	run.inBody = c.st == stBody || c.st == stChunked || errors.As(run.finalErr, &fe)
	run.answer = mc.out.Bytes()
	return run
}

// FuzzGuard checks the guard's promise to net/http: whatever it passes on
// parses as a sequence of requests, and no passed head is ambiguous.
func FuzzGuard(f *testing.F) {
	for _, tc := range rejectCases {
		f.Add([]byte(tc.raw))
	}
	for _, tc := range passCases {
		f.Add([]byte(tc.raw))
	}
	for _, tc := range chunkCases {
		f.Add([]byte(chunkPrefix + tc.body))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := runGuard(data, len(data)+1, 4096)
		if !bytes.HasPrefix(data, whole.passed) {
			t.Fatalf("the guard altered the stream: passed %q", whole.passed)
		}
		checkParses(t, whole)
		if len(whole.rejects) > 1 {
			t.Fatalf("%d rejections on one connection", len(whole.rejects))
		}
		if len(whole.rejects) == 1 && !whole.inBody {
			res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(whole.answer)), nil)
			if err != nil || res.StatusCode != whole.rejects[0] {
				t.Fatalf("answer %q does not carry status %d: %v", whole.answer, whole.rejects[0], err)
			}
		}
		// Incremental parsing must not change the outcome.
		for _, v := range []struct{ chunk, readSize int }{{1, 4096}, {3, 100}, {len(data) + 1, 2}} {
			chunk := v.chunk
			run := runGuard(data, v.chunk, v.readSize)
			if !bytes.Equal(run.passed, whole.passed) || len(run.rejects) != len(whole.rejects) {
				t.Fatalf("reads of %d bytes: passed %q rejects %v; whole: passed %q rejects %v",
					chunk, run.passed, run.rejects, whole.passed, whole.rejects)
			}
		}
	})
}

// checkParses parses the passed bytes with http.ReadRequest, request after
// request, reading every body.
func checkParses(t *testing.T, run guardRun) {
	t.Helper()
	src := bytes.NewReader(run.passed)
	br := bufio.NewReader(src)
	offset := func() int { return len(run.passed) - src.Len() - br.Buffered() }
	for {
		start := offset()
		req, err := http.ReadRequest(br)
		if err == io.EOF && start == len(run.passed) {
			return
		}
		if err != nil {
			t.Fatalf("passed bytes do not parse at %d: %v\n%q", start, err, run.passed[start:])
		}
		checkHead(t, run.passed[start:offset()])
		_, err = io.Copy(io.Discard, req.Body)
		req.Body.Close()
		if err != nil {
			if run.inBody && offset() == len(run.passed) {
				return // a body cut short by the end of input or by the guard
			}
			t.Fatalf("passed body does not parse: %v", err)
		}
	}
}

// checkHead looks at a passed head without net/http's help.
func checkHead(t *testing.T, head []byte) {
	t.Helper()
	var cl, te int
	for i, line := range strings.Split(string(head), "\r\n") {
		if i == 0 || line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			t.Fatalf("passed an obs-fold: %q", head)
		}
		name, _, _ := strings.Cut(line, ":")
		if strings.ContainsAny(name, "_ \t") {
			t.Fatalf("passed a bad field name %q", name)
		}
		switch strings.ToLower(name) {
		case "content-length":
			cl++
		case "transfer-encoding":
			te++
		}
	}
	if cl > 1 || te > 1 || cl+te > 1 {
		t.Fatalf("passed an ambiguous head: %q", head)
	}
	if bytes.IndexByte(head, 0) >= 0 {
		t.Fatalf("passed a NUL: %q", head)
	}
}
