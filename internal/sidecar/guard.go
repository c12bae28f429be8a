package sidecar

import (
	"net"

	"github.com/wardsec/ward/internal/proxy"
)

// guard applies HTTP/1.x request hygiene to an inbound connection: framing
// that could be read two ways, oversized or slow heads are refused before
// net/http parses anything.
func (s *Sidecar) guard(c net.Conn) net.Conn {
	return proxy.GuardConn(c, proxy.Limits{MaxHeaderBytes: s.lim.MaxHeaderBytes, MaxBodyBytes: s.lim.MaxBodyBytes}, s.log)
}
