package ratelimit

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
)

// ConnLimiter is a net.Listener that limits how often each source may open
// a connection. A connection over its source's rate is closed as soon as it
// is accepted, before any byte is read, and Accept waits for the next one.
//
// Sources are IPv4 addresses and IPv6 /64 prefixes (one host usually owns a
// whole /64, so a per-address limit would be trivial to escape).
// Connections with no IP source, such as over a Unix socket, are not limited.
// The limit is per process: it is a cheap first defence against a flood, not
// an exact shared quota, so it uses a Local.
type ConnLimiter struct {
	net.Listener
	limiter  *Local
	limit    Limit
	rejected atomic.Uint64
}

// NewConnLimiter wraps ln so that each source may connect at most l.Burst
// times at once and l.Rate after that, using limiter for the state. The
// limiter may be shared with other uses; keys are prefixed with "conn:".
func NewConnLimiter(ln net.Listener, limiter *Local, l Limit) (*ConnLimiter, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return &ConnLimiter{Listener: ln, limiter: limiter, limit: l}, nil
}

// Accept returns the next connection whose source is within its rate.
func (c *ConnLimiter) Accept() (net.Conn, error) {
	for {
		conn, err := c.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, ok := sourceKey(conn.RemoteAddr())
		if !ok {
			return conn, nil
		}
		res, err := c.limiter.Allow(context.Background(), key, c.limit)
		if err == nil && !res.Allowed {
			c.rejected.Add(1)
			_ = conn.Close() // nothing to report: the peer is being turned away
			continue
		}
		return conn, nil
	}
}

// Rejected returns how many connections have been closed for exceeding
// their rate.
func (c *ConnLimiter) Rejected() uint64 { return c.rejected.Load() }

func sourceKey(a net.Addr) (string, bool) {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return "", false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if !ip.IsValid() {
		return "", false
	}
	if ip.Is6() {
		p, err := ip.Prefix(64)
		if err != nil {
			return "", false
		}
		return "conn:" + p.String(), true
	}
	return "conn:" + ip.String(), true
}
