package detect

import (
	"net/netip"
	"slices"
	"time"

	"github.com/wardsec/ward/internal/resource"
)

// Hit is the ban that matched a request.
type Hit struct {
	// Name is the Ban resource's name.
	Name string
	// Expires is when it ends.
	Expires time.Time
}

// entry is one compiled ban.
type entry struct {
	name    string
	expires int64 // unix nanoseconds
}

type userKey struct{ issuer, subject string }

// Bans is the compiled, immutable set of a snapshot's Ban resources. The
// zero value and nil ban nothing.
type Bans struct {
	addrs    map[netip.Addr]entry   // single addresses
	prefixes map[netip.Prefix]entry // CIDRs, masked
	bits4    []int                  // prefix lengths present among IPv4 CIDRs, longest first
	bits6    []int                  // and among IPv6 CIDRs
	keys     map[string]entry       // API key prefixes
	users    map[userKey]entry
	ids      map[string]entry // SPIFFE IDs
	n        int
}

// Compile builds the table from objs, ignoring other kinds. Objects are
// expected to have passed resource.Validate; an invalid Ban is skipped.
// Of two bans on the same caller the one ending later counts.
func Compile(objs []resource.Object) *Bans {
	b := &Bans{}
	for i := range objs {
		o := &objs[i]
		s, ok := o.Spec.(*resource.BanSpec)
		if !ok || o.Kind != resource.KindBan {
			continue
		}
		exp := s.ExpiresAt()
		if exp.IsZero() {
			continue
		}
		e := entry{name: o.Metadata.Name, expires: exp.UnixNano()}
		b.n++
		switch {
		case s.Source != "":
			p, ok := s.Prefix()
			if !ok {
				continue
			}
			if p.IsSingleIP() {
				b.addrs = put(b.addrs, p.Addr(), e)
				continue
			}
			b.prefixes = put(b.prefixes, p, e)
			if p.Addr().Is4() {
				b.bits4 = addBits(b.bits4, p.Bits())
			} else {
				b.bits6 = addBits(b.bits6, p.Bits())
			}
		case s.APIKey != "":
			b.keys = put(b.keys, s.APIKey, e)
		case s.User != (resource.BannedUser{}):
			b.users = put(b.users, userKey{s.User.Issuer, s.User.Subject}, e)
		case s.SPIFFEID != "":
			b.ids = put(b.ids, s.SPIFFEID, e)
		}
	}
	return b
}

func put[K comparable](m map[K]entry, k K, e entry) map[K]entry {
	if m == nil {
		m = map[K]entry{}
	}
	if old, ok := m[k]; !ok || old.expires < e.expires {
		m[k] = e
	}
	return m
}

func addBits(bits []int, n int) []int {
	if !slices.Contains(bits, n) {
		bits = append(bits, n)
		slices.SortFunc(bits, func(a, b int) int { return b - a })
	}
	return bits
}

// Len is the number of bans compiled, expired ones included.
func (b *Bans) Len() int {
	if b == nil {
		return 0
	}
	return b.n
}

// Active is the number of bans in force at now.
func (b *Bans) Active(now time.Time) int {
	if b == nil {
		return 0
	}
	t, n := now.UnixNano(), 0
	count := func(e entry) {
		if e.expires > t {
			n++
		}
	}
	for _, e := range b.addrs {
		count(e)
	}
	for _, e := range b.prefixes {
		count(e)
	}
	for _, e := range b.keys {
		count(e)
	}
	for _, e := range b.users {
		count(e)
	}
	for _, e := range b.ids {
		count(e)
	}
	return n
}

func hit(e entry, ok bool, now int64) (Hit, bool) {
	if !ok || e.expires <= now {
		return Hit{}, false
	}
	return Hit{Name: e.name, Expires: time.Unix(0, e.expires)}, true
}

// Addr reports the ban on a, or on a CIDR holding it, in force at now.
func (b *Bans) Addr(a netip.Addr, now time.Time) (Hit, bool) {
	if b == nil || !a.IsValid() || (b.addrs == nil && b.prefixes == nil) {
		return Hit{}, false
	}
	t := now.UnixNano()
	a = a.Unmap().WithZone("")
	if e, ok := b.addrs[a]; ok {
		if h, ok := hit(e, ok, t); ok {
			return h, true
		}
	}
	bits := b.bits6
	if a.Is4() {
		bits = b.bits4
	}
	for _, n := range bits {
		p, err := a.Prefix(n)
		if err != nil {
			continue
		}
		e, ok := b.prefixes[p]
		if h, ok := hit(e, ok, t); ok {
			return h, true
		}
	}
	return Hit{}, false
}

// APIKey reports the ban on the API key with prefix in force at now.
func (b *Bans) APIKey(prefix string, now time.Time) (Hit, bool) {
	if b == nil || b.keys == nil || prefix == "" {
		return Hit{}, false
	}
	e, ok := b.keys[prefix]
	return hit(e, ok, now.UnixNano())
}

// User reports the ban on the user in force at now.
func (b *Bans) User(issuer, subject string, now time.Time) (Hit, bool) {
	if b == nil || b.users == nil || subject == "" {
		return Hit{}, false
	}
	e, ok := b.users[userKey{issuer, subject}]
	return hit(e, ok, now.UnixNano())
}

// HasUsers reports whether any user is banned: the gateway then checks
// the user once authentication has named one.
func (b *Bans) HasUsers() bool { return b != nil && len(b.users) > 0 }

// SPIFFEID reports the ban on the workload id in force at now.
func (b *Bans) SPIFFEID(id string, now time.Time) (Hit, bool) {
	if b == nil || b.ids == nil || id == "" {
		return Hit{}, false
	}
	e, ok := b.ids[id]
	return hit(e, ok, now.UnixNano())
}
