package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Guard validates the framing of HTTP/1.x requests before net/http parses
// them. It wraps a listener ([Guard.Listener]) or single connections
// ([Guard.Conn], for connections whose TLS handshake negotiated http/1.1);
// the http.Server then reads each connection through the guard, which hands
// it a request head only once the whole head is valid, and bodies only as
// far as their framing is.
//
// A request whose head breaks a rule never reaches net/http: the guard
// answers it with a short plain-text error naming the rule
// ("HTTP/1.1 400 Bad Request ... ambiguous request: Content-Length with
// Transfer-Encoding"), calls OnReject, and closes the connection. A chunked
// body that breaks its framing is found after its head was passed on: the
// handler's Body.Read then fails with a [FramingError] and the connection is
// closed after the handler returns. So a handler that forwards a chunked
// body must read it to its end before forwarding (or stream it and abort the
// upstream request on error).
//
// What the guard refuses (400 unless said otherwise):
//   - framing ambiguity: Content-Length with Transfer-Encoding; more than
//     one Content-Length (even equal, or as a list); a Content-Length that
//     is not all digits or overflows; Transfer-Encoding other than exactly
//     "chunked" (any case), or repeated; Transfer-Encoding in HTTP/1.0; a
//     Trailer header naming Content-Length, Transfer-Encoding, Trailer or
//     Host;
//   - Host: missing in HTTP/1.1, repeated, not host[:port], or not equal
//     to the authority of an absolute-form target;
//   - syntax: a request line other than token SP target SP HTTP/1.0|1.1
//     (505 for other versions and the HTTP/2 preface); a line ending
//     without CR or a CR without LF; control characters (HTAB allowed in
//     values); obs-fold; a field name that is not a token, contains '_',
//     or is followed by whitespace before the colon; an empty line before
//     the request line; a target with '#', non-ASCII or bad
//     percent-encoding, a userinfo, a scheme other than http(s), '*' with
//     a method other than OPTIONS, or an authority-form target other than
//     in CONNECT;
//   - limits: head over MaxHeaderBytes or over MaxHeaders fields (431),
//     target over MaxURLBytes (414), Content-Length over MaxBodyBytes
//     (413), head not received within HeaderTimeout (408).
//   - in a chunked body, as a FramingError: a chunk size that is not 1 to
//     16 hex digits; a chunk extension with controls or a size line over
//     1 KiB; a missing CRLF; more than 16 KiB of overhead (net/http's
//     bound); a body over MaxBodyBytes (413); trailers that break the
//     header rules above, name a framing field, or exceed 4 KiB (431).
//
// Keep-alive, pipelining, Expect: 100-continue, streaming bodies and
// protocol upgrades ([Passthrough]) work as without the guard.
//
// A Guard must not be copied or changed after its first use.
type Guard struct {
	Limits Limits
	// Logger receives one line per rejected request (nil: none).
	Logger *slog.Logger
	// OnReject, if set, is called once per rejected request, after the
	// guard answered it, with the connection under the guard (a *tls.Conn
	// after a handshake), the status and a constant reason. It runs on the
	// connection's goroutine: it should be quick.
	OnReject func(c net.Conn, status int, reason string)
	// Body, if set, makes the body of a refusal (and its content type)
	// from the status, so that a role answers malformed heads as it
	// answers every other refusal; nil: the rule's text, as text/plain.
	Body func(status int) (contentType string, body []byte)

	once sync.Once
	lim  Limits
	log  *slog.Logger
}

// NewGuard wraps l so that every connection it accepts is guarded with lim.
func NewGuard(l net.Listener, lim Limits, log *slog.Logger) net.Listener {
	return (&Guard{Limits: lim, Logger: log}).Listener(l)
}

// GuardConn guards one connection that carries HTTP/1.x in the clear: a
// plaintext TCP connection, or a *tls.Conn after a handshake that
// negotiated http/1.1 (or no ALPN). It must not be used on a connection
// that will speak HTTP/2.
func GuardConn(c net.Conn, lim Limits, log *slog.Logger) net.Conn {
	return (&Guard{Limits: lim, Logger: log}).Conn(c)
}

func (g *Guard) init() {
	g.once.Do(func() {
		g.lim = g.Limits.withDefaults()
		g.log = g.Logger
		if g.log == nil {
			g.log = slog.New(slog.DiscardHandler)
		}
	})
}

// Listener returns l with every accepted connection guarded.
func (g *Guard) Listener(l net.Listener) net.Listener {
	g.init()
	return &listener{Listener: l, g: g}
}

type listener struct {
	net.Listener
	g *Guard
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.g.Conn(c), nil
}

// Conn guards one connection; see [GuardConn]. If c reports a TLS
// connection state (as *tls.Conn does), so does the result, so that
// net/http still fills in Request.TLS.
func (g *Guard) Conn(c net.Conn) net.Conn {
	g.init()
	gc := &Conn{inner: c, g: g, lim: &g.lim, armed: true}
	// The first head must arrive within HeaderTimeout of the connection.
	gc.headDL = time.Now().Add(g.lim.HeaderTimeout)
	if cs, ok := c.(connectionStater); ok {
		return &tlsConn{Conn: gc, cs: cs}
	}
	return gc
}

type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// tlsConn is a guarded connection that exposes the TLS state of the
// connection under it; net/http uses it for Request.TLS.
type tlsConn struct {
	*Conn
	cs connectionStater
}

func (c *tlsConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

// FramingError is the cause of the read error a handler gets from
// Request.Body when the body broke HTTP/1.1 framing (bad chunked encoding)
// or grew past Limits.MaxBodyBytes. The error itself is a *net.OpError, so
// that net/http treats it as a failed read and closes the connection; use
// errors.As to find the FramingError and answer with its Status.
type FramingError struct {
	Status int
	Reason string
}

func (e *FramingError) Error() string { return "proxy: " + e.Reason }

// Reading states of a guarded connection.
type state uint8

const (
	stHead        state = iota // validating a request head
	stBody                     // passing a Content-Length body
	stChunked                  // validating a chunked body
	stPassthrough              // raw bytes after a protocol switch
	stRejected                 // done: Read returns rejErr
)

const (
	initialBufSize = 4 << 10
	// minDirectRead is the smallest read that the guard serves by reading
	// a head straight into the caller's buffer (net/http reads 4 KiB).
	minDirectRead = 1 << 10
	// After an answered rejection the guard reads and drops what the
	// client still sends, for a while, so that closing the socket with
	// unread data (a TCP reset) does not destroy the answer in flight.
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
	// rejectWriteTimeout bounds the write of a rejection.
	rejectWriteTimeout = 5 * time.Second
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, initialBufSize); return &b }}

// Conn is a connection under a [Guard]. Its Read hands out only validated
// bytes. It is safe for concurrent use like any net.Conn.
type Conn struct {
	inner net.Conn
	g     *Guard
	lim   *Limits

	readMu sync.Mutex // serializes Read; owns the fields up to mu
	// buf[r:v] is validated and not yet read; buf[v:w] arrived and is not
	// validated yet (the start of a head). buf is pooled and only held
	// while it has bytes.
	buf     []byte
	bp      *[]byte
	r, v, w int
	st      state
	remain  int64 // stBody: bytes left
	held    int   // stChunked: bytes after v already scanned but held back
	head    headParser
	chunk   chunkParser
	served  int  // heads passed to net/http
	armed   bool // the head timer is running
	pend    *violation
	giveUp  time.Time // see deliver
	rejErr  error
	upgrade atomic.Bool

	mu      sync.Mutex // guards the deadlines
	userRD  time.Time  // read deadline set by the user of the Conn
	headDL  time.Time  // head timer, zero when not running
	applied time.Time  // read deadline currently set on the inner conn
}

// NetConn returns the connection under the guard.
func (c *Conn) NetConn() net.Conn { return c.inner }

// Write writes to the connection: responses are not guarded.
func (c *Conn) Write(p []byte) (int, error) { return c.inner.Write(p) }

// Close closes the connection.
func (c *Conn) Close() error { return c.inner.Close() }

// LocalAddr returns the local address of the connection.
func (c *Conn) LocalAddr() net.Addr { return c.inner.LocalAddr() }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.inner.RemoteAddr() }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.inner.SetWriteDeadline(t) }

// Passthrough switches the connection to raw mode: from now on Read returns
// whatever the peer sends, unvalidated. Call it once an upgrade was
// accepted (101 Switching Protocols) or a CONNECT tunnel established,
// before the response is sent to the client. Bytes the guard holds but has
// not validated yet are passed on as they are. It has no effect on a
// connection that already rejected a request.
func (c *Conn) Passthrough() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.upgrade.Store(true)
	c.headDL = time.Time{}
	_ = c.applyLocked() // unblocks nothing, only lifts the head timer
}

// SetReadDeadline sets the read deadline of the user of the connection;
// the guard combines it with its head timer.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.userRD = t
	return c.applyLocked()
}

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.inner.SetWriteDeadline(t)
}

// CloseWrite shuts down the writing side when the connection under the
// guard can (TCP, TLS); net/http uses it before closing.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.inner.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// ReadFrom lets responses use the inner connection's fast paths (sendfile,
// splice); only reads are guarded.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.inner, r) }

// applyLocked sets the earlier of the user deadline and the head timer on
// the inner connection, when it changed. c.mu must be held.
func (c *Conn) applyLocked() error {
	d := c.userRD
	if !c.headDL.IsZero() && (d.IsZero() || c.headDL.Before(d)) {
		d = c.headDL
	}
	if d.Equal(c.applied) {
		return nil
	}
	c.applied = d
	return c.inner.SetReadDeadline(d)
}

// Read reads validated bytes.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.r < c.v {
			n := copy(p, c.buf[c.r:c.v])
			c.r += n
			c.releaseBuf()
			return n, nil
		}
		if c.pend != nil {
			return c.deliver(len(p))
		}
		switch c.st {
		case stRejected:
			return 0, c.rejErr
		case stPassthrough:
			c.releaseBuf()
			return c.readInner(p)
		}
		if c.upgrade.Load() {
			c.v, c.held = c.w, 0
			c.st = stPassthrough
			c.disarm()
			continue
		}
		if c.v == c.w {
			// Nothing unvalidated buffered: bodies go straight to p.
			switch {
			case c.st == stBody:
				return c.readBody(p)
			case c.st == stChunked && c.chunk.inData():
				return c.readChunkData(p)
			}
		}
		if c.buf == nil && c.st == stHead && len(p) >= minDirectRead {
			// Read the head straight into p: no copy, and no buffer held
			// while an idle connection waits.
			n, err := c.readHeadDirect(p)
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		n, err := c.fill()
		if n > 0 {
			c.advance()
			continue
		}
		if err = c.readError(err); err != nil {
			c.releaseBuf()
			return 0, err
		}
	}
}

// readInner reads from the inner connection under the current deadline.
func (c *Conn) readInner(p []byte) (int, error) {
	c.mu.Lock()
	err := c.applyLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.inner.Read(p)
}

func (c *Conn) readBody(p []byte) (int, error) {
	c.releaseBuf()
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.readInner(p)
	c.remain -= int64(n)
	if c.remain == 0 {
		c.nextRequest()
	}
	return n, err
}

func (c *Conn) readChunkData(p []byte) (int, error) {
	c.releaseBuf()
	if uint64(len(p)) > c.chunk.size {
		p = p[:c.chunk.size]
	}
	n, err := c.readInner(p)
	c.chunk.consumed(n)
	return n, err
}

// readHeadDirect reads into p and validates there. It returns the
// validated bytes, which are already in place, and keeps the rest (a
// partial head) in a buffer of its own.
func (c *Conn) readHeadDirect(p []byte) (int, error) {
	n, err := c.readInner(p)
	if n == 0 {
		return 0, c.readError(err)
	}
	c.buf, c.bp = p[:n], nil
	c.r, c.v, c.w = 0, 0, n
	c.advance()
	done := c.v
	tail := p[c.v+c.held : n] // not yet scanned
	held := p[c.v : c.v+c.held]
	c.buf = nil
	c.r, c.v, c.w = 0, 0, 0
	if c.pend == nil && len(held)+len(tail) > 0 {
		c.makeRoom()
		if need := len(held) + len(tail); need > len(c.buf) {
			c.putBuf()
			c.buf = make([]byte, 2*need)
		}
		c.w = copy(c.buf, held)
		c.w += copy(c.buf[c.w:], tail)
		c.held = len(held)
	}
	return done, nil
}

// fill reads more bytes into buf[w:].
func (c *Conn) fill() (int, error) {
	c.makeRoom()
	c.mu.Lock()
	if c.st == stHead && c.v < c.w && !c.armed && !c.upgrade.Load() {
		// A head started and did not finish in one read: time it.
		c.armed = true
		c.headDL = time.Now().Add(c.lim.HeaderTimeout)
	}
	err := c.applyLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.inner.Read(c.buf[c.w:])
	c.w += n
	return n, err
}

// readError turns a failed read of the inner connection into what Read
// returns: nil when the guard found a violation to deliver instead.
func (c *Conn) readError(err error) error {
	if err == nil {
		return nil // a zero-byte read; try again
	}
	if c.st != stHead {
		return err
	}
	partial := c.v < c.w
	if errors.Is(err, io.EOF) && partial {
		c.pend = vIncomplete
		return nil
	}
	if !isTimeout(err) {
		return err
	}
	c.mu.Lock()
	now := time.Now()
	ours := !c.headDL.IsZero() && !now.Before(c.headDL) &&
		(c.userRD.IsZero() || !c.userRD.Before(c.headDL))
	c.mu.Unlock()
	if !ours {
		return err // the user's deadline, e.g. net/http aborting a read
	}
	if !partial {
		// Nothing was sent at all: close quietly, as for an idle
		// connection.
		c.reject(nil, false)
		return io.EOF
	}
	c.pend = vTimeout
	return nil
}

// advance validates buffered bytes as far as it can.
func (c *Conn) advance() {
	for c.v+c.held < c.w && c.pend == nil {
		switch c.st {
		case stHead:
			n, v := c.head.parse(c.buf[c.v:c.w], c.lim)
			if v != nil {
				c.pend = v
				return
			}
			if n == 0 {
				return
			}
			c.v += n
			c.served++
			c.disarm()
			switch {
			case c.head.chunked:
				c.st = stChunked
				c.chunk = chunkParser{}
			case c.head.cl > 0:
				c.st = stBody
				c.remain = c.head.cl
			}
			c.head.reset()
		case stBody:
			k := int64(c.w - c.v)
			if k > c.remain {
				k = c.remain
			}
			c.v += int(k)
			c.remain -= k
			if c.remain == 0 {
				c.nextRequest()
			}
		case stChunked:
			scanned, rel, done, v := c.chunk.feed(c.buf[c.v:c.w], c.held, c.lim)
			c.v += rel
			c.held = scanned - rel
			if v != nil {
				c.held = 0
				c.pend = v
				return
			}
			if done {
				c.nextRequest()
			}
			if c.held > 0 {
				return // the rest of a chunk-size line or of the trailer section
			}
		default:
			return
		}
	}
}

func (c *Conn) nextRequest() {
	c.st = stHead
	c.head.reset()
}

// disarm stops the head timer.
func (c *Conn) disarm() {
	if !c.armed {
		return
	}
	c.armed = false
	c.mu.Lock()
	c.headDL = time.Time{}
	c.mu.Unlock()
}

// deliver acts on the pending violation.
//
// A head violation is answered on the connection. When net/http may still
// be writing the response to an earlier request on the same connection, the
// answer must wait: that is the case when the read comes from net/http's
// background read, which it starts once a request's body is consumed, and
// which asks for exactly one byte. The guard then holds that read until
// net/http aborts it (by setting a read deadline in the past, after the
// response was flushed) and answers on the next read. If the handler takes
// longer than HeaderTimeout, the connection is closed without an answer.
func (c *Conn) deliver(plen int) (int, error) {
	v := c.pend
	if v.body {
		c.pend = nil
		c.reject(v, false)
		oe := &net.OpError{Op: "read", Source: c.LocalAddr(), Addr: c.RemoteAddr(),
			Err: &FramingError{Status: v.status, Reason: v.reason}}
		if oe.Source != nil {
			oe.Net = oe.Source.Network()
		}
		c.rejErr = oe
		return 0, c.rejErr
	}
	if c.upgrade.Load() {
		// The peer sent a bad head before the switch it asked for: no
		// HTTP answer is possible any more.
		c.pend = nil
		c.reject(v, false)
		return 0, io.EOF
	}
	if c.served > 0 && plen == 1 {
		if err, gaveUp := c.wait(); !gaveUp {
			return 0, err
		}
		c.pend = nil
		c.reject(v, false)
		return 0, io.EOF
	}
	c.pend = nil
	c.reject(v, true)
	return 0, io.EOF
}

// wait blocks a background read until its user aborts it, dropping what
// the peer sends meanwhile. It reports gaveUp when HeaderTimeout passed
// first; otherwise it returns the error that ended the read.
func (c *Conn) wait() (err error, gaveUp bool) {
	if c.giveUp.IsZero() {
		c.giveUp = time.Now().Add(c.lim.HeaderTimeout)
	}
	for {
		c.w = c.v // drop: the violation stands
		c.makeRoom()
		c.mu.Lock()
		c.armed = true
		c.headDL = c.giveUp
		aerr := c.applyLocked()
		c.mu.Unlock()
		if aerr != nil {
			return aerr, false
		}
		_, err := c.inner.Read(c.buf[c.w:])
		if err == nil {
			continue
		}
		if isTimeout(err) && !time.Now().Before(c.giveUp) {
			c.mu.Lock()
			user := !c.userRD.IsZero() && c.userRD.Before(c.giveUp)
			c.mu.Unlock()
			if !user {
				return nil, true
			}
		}
		return err, false
	}
}

// reject ends the connection's requests: it reports v (if any), answers it
// when write is set, and makes Read return io.EOF from now on.
func (c *Conn) reject(v *violation, write bool) {
	c.st = stRejected
	c.rejErr = io.EOF
	c.disarm()
	if v != nil { // report first: the audit record precedes the answer
		c.g.log.LogAttrs(context.Background(), slog.LevelInfo, "request rejected",
			slog.Int("status", v.status), slog.String("reason", v.reason),
			slog.String("remote", addrString(c.RemoteAddr())))
		if c.g.OnReject != nil {
			c.g.OnReject(c.inner, v.status, v.reason)
		}
	}
	if write {
		c.answer(v)
		c.linger()
	}
	c.w, c.held = c.v, 0
	c.releaseBuf()
}

// answer writes the error response for v on the inner connection.
func (c *Conn) answer(v *violation) {
	var a [256]byte
	b := append(a[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(v.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(v.status)...)
	ct, body := "text/plain; charset=utf-8", append([]byte(v.reason), '\n')
	if c.g.Body != nil {
		ct, body = c.g.Body(v.status)
	}
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, ct...)
	b = append(b, "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Ward-Deny-Reason: malformed_request\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	_ = c.inner.SetWriteDeadline(time.Now().Add(rejectWriteTimeout))
	if _, err := c.inner.Write(b); err == nil {
		_ = c.CloseWrite()
	}
}

// linger reads and drops what the peer still sends, until it closes, for
// at most lingerTime and lingerBytes.
func (c *Conn) linger() {
	c.mu.Lock()
	c.applied = time.Now().Add(lingerTime)
	err := c.inner.SetReadDeadline(c.applied)
	c.mu.Unlock()
	if err != nil {
		return
	}
	c.w = c.v
	c.makeRoom()
	for n := 0; n < lingerBytes; {
		k, err := c.inner.Read(c.buf[c.w:])
		n += k
		if err != nil {
			return
		}
	}
}

// makeRoom makes sure buf[w:] is not empty, taking a pooled buffer,
// sliding unread bytes to the front, or growing it for a large head.
func (c *Conn) makeRoom() {
	if c.buf == nil {
		c.bp = bufPool.Get().(*[]byte)
		c.buf = *c.bp
		c.r, c.v, c.w = 0, 0, 0
	}
	if c.w < len(c.buf) {
		return
	}
	if c.r > 0 {
		copy(c.buf, c.buf[c.r:c.w])
		c.v -= c.r
		c.w -= c.r
		c.r = 0
		return
	}
	// Only a head, a chunk-size line or a trailer section is ever held
	// unvalidated, and their limits bound the buffer.
	size := 2 * len(c.buf)
	if limit := max(c.lim.MaxHeaderBytes, maxChunkLine+maxTrailerBytes+8) + 1; size > limit {
		size = max(limit, len(c.buf)+1)
	}
	nb := make([]byte, size)
	copy(nb, c.buf[:c.w])
	c.putBuf()
	c.buf = nb
}

// releaseBuf gives the buffer back once every byte in it was read.
func (c *Conn) releaseBuf() {
	if c.buf != nil && c.r == c.w {
		c.putBuf()
		c.buf = nil
		c.r, c.v, c.w = 0, 0, 0
	}
}

func (c *Conn) putBuf() {
	if c.bp != nil {
		bufPool.Put(c.bp)
		c.bp = nil
	}
}

// isTimeout reports whether err is a deadline's: net/http aborts its
// background read with a deadline in the past, after every request.
func isTimeout(err error) bool {
	if ne, ok := err.(net.Error); ok { // no allocation on this path
		return ne.Timeout()
	}
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

var (
	_ net.Conn         = (*Conn)(nil)
	_ connectionStater = (*tlsConn)(nil)
	_ io.ReaderFrom    = (*Conn)(nil)
	_ net.Listener     = (*listener)(nil)
)
