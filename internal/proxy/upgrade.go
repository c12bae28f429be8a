package proxy

import (
	"context"
	"net"
)

type connKey struct{}

// ConnContext is meant for http.Server.ConnContext: it records the guarded
// connection in the context of every request read from it, for
// [UpgradeFromContext]. Connections that are not guarded leave ctx as it is.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if gc := guarded(c); gc != nil {
		return context.WithValue(ctx, connKey{}, gc)
	}
	return ctx
}

// UpgradeFromContext switches the connection of the request whose context
// is ctx to raw pass-through (see [Conn.Passthrough]). Call it once the
// upstream accepted the switch (101 Switching Protocols, e.g. from
// httputil.ReverseProxy.ModifyResponse) or a CONNECT tunnel is up, before
// the response goes to the client. It reports false when the request did
// not come through a guard (the server lacks ConnContext, or the
// connection is HTTP/2).
func UpgradeFromContext(ctx context.Context) bool {
	gc, ok := ctx.Value(connKey{}).(*Conn)
	if ok {
		gc.Passthrough()
	}
	return ok
}

// Passthrough switches c to raw pass-through if it is a guarded connection
// (see [Conn.Passthrough]), for handlers that hijack c themselves. It
// reports whether c was guarded.
func Passthrough(c net.Conn) bool {
	gc := guarded(c)
	if gc != nil {
		gc.Passthrough()
	}
	return gc != nil
}

func guarded(c net.Conn) *Conn {
	switch c := c.(type) {
	case *Conn:
		return c
	case *tlsConn:
		return c.Conn
	}
	return nil
}
