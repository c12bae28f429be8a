package resource

import (
	"net/netip"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// KindBan is the kind of the resource that refuses one caller everywhere:
// every gateway and sidecar answers its requests 403 (reason banned)
// before any authentication work, until the ban expires.
const KindBan = "Ban"

// BanSpec names exactly one caller to refuse: a source address or CIDR,
// an API key (its prefix, the part before the secret), a user (issuer and
// subject) or a workload (SPIFFE ID). Bans concern no single service, so
// only admins may add or lift them.
type BanSpec struct {
	// Source is an IP address ("203.0.113.7") or a CIDR ("203.0.113.0/24").
	Source string `yaml:"source,omitempty"`
	// APIKey is the prefix of an API key: the eight characters after
	// "wak_".
	APIKey string `yaml:"apiKey,omitempty"`
	// User is a person known to an Issuer.
	User BannedUser `yaml:"user,omitempty"`
	// SPIFFEID is a workload's identity, "spiffe://<td>/svc/<name>".
	SPIFFEID string `yaml:"spiffeID,omitempty"`
	// Expires is when the ban ends (RFC 3339); required: a ban without end
	// would outlive its reason. Proxies stop enforcing it at that instant
	// and the server then removes it.
	Expires string `yaml:"expires"`
	// Reason says why, for the operator and the audit log (never shown to
	// the banned caller).
	Reason string `yaml:"reason"`
	// By says who or what made the ban: an operator, or the DetectionRule
	// that fired.
	By string `yaml:"by,omitempty"`
}

// BannedUser is a user banned by issuer and subject, as the access records
// show them: the issuer is the "iss" of the user's tokens (an Issuer's
// issuerURL), or "mtls" for client certificates.
type BannedUser struct {
	Issuer  string `yaml:"issuer"`
	Subject string `yaml:"subject"`
}

func (s *BanSpec) setDefaults() {}

// ExpiresAt returns the parsed end of the ban; the zero time when invalid
// (Validate reports it).
func (s *BanSpec) ExpiresAt() time.Time {
	t, err := time.Parse(time.RFC3339, s.Expires)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Prefix returns Source as a prefix (an address is a /32 or /128), masked.
func (s *BanSpec) Prefix() (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s.Source); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s.Source); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

func (s *BanSpec) validate(v validator) {
	targets := 0
	if s.Source != "" {
		targets++
		if p, ok := s.Prefix(); !ok || p.Addr().Zone() != "" {
			v.errorf("spec.source", "invalid source %q: want an IP address or a CIDR such as 203.0.113.0/24", s.Source)
		}
	}
	if s.APIKey != "" {
		targets++
		if !isKeyPrefix(s.APIKey) {
			v.errorf("spec.apiKey", "invalid API key prefix %q: want the 8 lowercase base32 characters after \"wak_\"", s.APIKey)
		}
	}
	if s.User != (BannedUser{}) {
		targets++
		if s.User.Issuer == "" {
			v.errorf("spec.user.issuer", "required")
		}
		if s.User.Subject == "" {
			v.errorf("spec.user.subject", "required")
		}
	}
	if s.SPIFFEID != "" {
		targets++
		if _, err := spiffeid.FromString(s.SPIFFEID); err != nil {
			v.errorf("spec.spiffeID", "invalid SPIFFE ID %q: %v", s.SPIFFEID, err)
		}
	}
	if targets != 1 {
		v.errorf("spec", "name exactly one caller: source, apiKey, user or spiffeID (got %d)", targets)
	}
	if s.Expires == "" {
		v.errorf("spec.expires", "required: when the ban ends, RFC 3339 (2026-01-02T15:04:05Z)")
	} else if _, err := time.Parse(time.RFC3339, s.Expires); err != nil {
		v.errorf("spec.expires", "invalid time %q: want RFC 3339 (2026-01-02T15:04:05Z)", s.Expires)
	}
	if strings.TrimSpace(s.Reason) == "" {
		v.errorf("spec.reason", "required: say why, for the audit log")
	}
}

// isKeyPrefix reports whether s has the shape of an API key prefix.
func isKeyPrefix(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}
