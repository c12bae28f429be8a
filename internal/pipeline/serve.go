package pipeline

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/wardsec/ward/internal/proxy"
)

// Front turns a role's TLS listener into requests for one http.Server:
// each connection is admitted (or turned away at once), handshaken under
// a deadline, then served: HTTP/2 directly by net/http on the TLS
// connection, HTTP/1.x through the request guard first, so that both meet
// the same hygiene. Gateway and sidecar differ only in the hooks.
type Front struct {
	Listener         net.Listener
	TLS              *tls.Config
	Guard            *proxy.Guard
	Server           *http.Server
	HandshakeTimeout time.Duration // default 10s
	// Admit, when set, runs before the handshake: it returns the
	// connection to go on with (one that releases a slot when closed), or
	// false to drop it.
	Admit func(net.Conn) (net.Conn, bool)
	// Refused, when set, is told of each failed handshake.
	Refused func(raw net.Conn, err error)
	// Serve, when set, sees each handshaken connection: c is what would be
	// served (the guarded connection for HTTP/1.x). It returns the
	// connection to serve, or nil when it took the connection itself (a
	// protocol of its own, or a refusal).
	Serve func(ctx context.Context, tc *tls.Conn, c net.Conn) net.Conn
}

// Run serves until ctx ends, then shuts the server down gracefully.
func (f *Front) Run(ctx context.Context) error {
	queue := proxy.NewConnQueue(f.Listener.Addr())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = proxy.Serve(ctx, f.Server, queue) }()
	defer wg.Wait()
	return proxy.AcceptLoop(ctx, f.Listener, func(c net.Conn) {
		if f.Admit != nil {
			var ok bool
			if c, ok = f.Admit(c); !ok {
				return
			}
		}
		f.handle(ctx, c, queue)
	})
}

func (f *Front) handle(ctx context.Context, raw net.Conn, queue *proxy.ConnQueue) {
	timeout := f.HandshakeTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	tc := tls.Server(raw, f.TLS)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		if f.Refused != nil {
			f.Refused(raw, err)
		}
		tc.Close()
		return
	}
	var c net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		c = f.Guard.Conn(tc)
	}
	if f.Serve != nil {
		if c = f.Serve(ctx, tc, c); c == nil {
			return
		}
	}
	if !queue.Push(ctx, c) {
		c.Close()
	}
}
