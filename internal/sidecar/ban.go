package sidecar

import (
	"net"
	"net/netip"
	"time"

	"github.com/wardsec/ward/internal/detect"
	"github.com/wardsec/ward/internal/pipeline"
)

// ban refuses, before the identity token is verified, a banned workload
// (the peer's SPIFFE ID from the handshake), a banned connection address,
// and a banned client address a gateway forwards. That address is not yet
// vouched for, but honouring it can only refuse the request that claims
// it, never admit one.
func (s *Sidecar) ban(x *exchange) pipeline.Refusal {
	bans := s.snap().bans
	if bans.Len() == 0 {
		return pipeline.Refusal{}
	}
	now := time.Now()
	if id := x.State.peer.id.String(); id != "" {
		if h, ok := bans.SPIFFEID(id, now); ok {
			return banned(h, "workload "+id)
		}
	}
	for _, src := range [...]string{x.Source, x.State.fwd.clientIP} {
		if a, err := netip.ParseAddr(src); err == nil {
			if h, ok := bans.Addr(a, now); ok {
				return banned(h, "source "+src)
			}
		}
	}
	return pipeline.Refusal{}
}

// banConn checks a connection of the L4 (tcp) mode, before policy: the
// peer's SPIFFE ID and the connection's address.
func (s *Sidecar) banConn(p peer, addr net.Addr) (string, bool) {
	bans := s.snap().bans
	if bans.Len() == 0 {
		return "", false
	}
	now := time.Now()
	if id := p.id.String(); id != "" {
		if h, ok := bans.SPIFFEID(id, now); ok {
			return banned(h, "workload "+id).Detail, true
		}
	}
	if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		if h, ok := bans.Addr(ap.Addr(), now); ok {
			return banned(h, "source "+ap.Addr().String()).Detail, true
		}
	}
	return "", false
}

func banned(h detect.Hit, who string) pipeline.Refusal {
	return pipeline.Refuse(pipeline.Banned, who+" banned by Ban "+h.Name+" until "+h.Expires.UTC().Format(time.RFC3339))
}
