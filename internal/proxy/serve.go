package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// ShutdownGrace is how long Serve waits for requests in flight once its
// context ends.
const ShutdownGrace = 5 * time.Second

// Serve runs srv on l until ctx ends, then shuts it down gracefully
// (ShutdownGrace at most). A server closed by ctx returns nil.
func Serve(ctx context.Context, srv *http.Server, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
		// Shutdown lets HTTP/2 connections finish on their own; whatever
		// is still open when it returns is closed, so that no connection
		// (and no goroutine serving one) outlives Serve.
		_ = srv.Close()
		<-errc
		return nil
	}
}

// ConnQueue is a net.Listener fed with connections accepted and prepared
// elsewhere (after a TLS handshake and protocol choice), so that one
// http.Server serves them.
type ConnQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

// NewConnQueue returns a queue that reports addr as its address.
func NewConnQueue(addr net.Addr) *ConnQueue {
	return &ConnQueue{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

// Push hands c to the server; false if the queue closed or ctx ended first.
func (l *ConnQueue) Push(ctx context.Context, c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	case <-ctx.Done():
		return false
	}
}

// Accept implements net.Listener.
func (l *ConnQueue) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *ConnQueue) Close() error { l.once.Do(func() { close(l.closed) }); return nil }

// Addr implements net.Listener.
func (l *ConnQueue) Addr() net.Addr { return l.addr }

// AcceptLoop accepts connections from l until ctx ends and runs handle for
// each in its own goroutine. When ctx ends it closes l, waits ShutdownGrace
// for the handlers, then closes the connections still open and waits for
// their handlers to return.
func AcceptLoop(ctx context.Context, l net.Listener, handle func(net.Conn)) error {
	var live sync.Map
	var conns sync.WaitGroup
	defer func() {
		done := make(chan struct{})
		go func() { conns.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(ShutdownGrace):
			live.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
			<-done
		}
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return err
		}
		conns.Add(1)
		live.Store(c, struct{}{})
		go func() {
			defer conns.Done()
			defer live.Delete(c)
			handle(c)
		}()
	}
}
