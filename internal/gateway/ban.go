package gateway

import (
	"net/netip"
	"time"

	"github.com/wardsec/ward/internal/detect"
	"github.com/wardsec/ward/internal/pipeline"
)

// ban refuses a banned source address or API key before any
// authentication work: the address as the connection shows it, the key by
// its prefix, read from the header without checking the secret. A few map
// probes, no allocation, unless the request is refused.
func (g *Gateway) ban(x *exchange) pipeline.Refusal {
	// The presented key's prefix (its public part) goes to the record
	// even when the key turns out wrong: detection counts the distinct
	// keys one source tries.
	prefix := keyPrefix(x.R.Header.Get(HeaderAPIKey))
	x.State.p.KeyPrefix = prefix
	bans := x.State.snap.bans
	if bans.Len() == 0 {
		return pipeline.Refusal{}
	}
	now := time.Now()
	if a, err := netip.ParseAddr(x.Source); err == nil {
		if h, ok := bans.Addr(a, now); ok {
			return banned(h, "source "+x.Source)
		}
	}
	if prefix != "" {
		if h, ok := bans.APIKey(prefix, now); ok {
			return banned(h, "API key "+prefix)
		}
	}
	return pipeline.Refusal{}
}

// banUser refuses a banned user, once authentication has named one.
func (g *Gateway) banUser(x *exchange) pipeline.Refusal {
	bans, p := x.State.snap.bans, &x.State.p
	if !bans.HasUsers() || p.User == "" {
		return pipeline.Refusal{}
	}
	if h, ok := bans.User(p.Issuer, p.User, time.Now()); ok {
		return banned(h, "user "+p.Issuer+"/"+p.User)
	}
	return pipeline.Refusal{}
}

// keyPrefix returns the prefix of something shaped like an API key
// ("wak_" + 8 characters + "_" + secret), or "". Unlike
// authn.ParseAPIKey it does not decode the secret: a ban on the prefix
// holds whatever secret comes with it, and the lookup allocates nothing.
func keyPrefix(key string) string {
	const tag, n = "wak_", 8
	if len(key) <= len(tag)+n+1 || key[:len(tag)] != tag || key[len(tag)+n] != '_' {
		return ""
	}
	return key[len(tag) : len(tag)+n]
}

func banned(h detect.Hit, who string) pipeline.Refusal {
	return pipeline.Refuse(pipeline.Banned, who+" banned by Ban "+h.Name+" until "+h.Expires.UTC().Format(time.RFC3339))
}
