package resource

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Kinds of the detection resources.
const (
	// KindDetectionRule is a threshold over a sliding window on one signal
	// of the request records, and the response when it is crossed.
	KindDetectionRule = "DetectionRule"
	// KindAllowList names callers that detection never bans.
	KindAllowList = "AllowList"
)

// Signals a DetectionRule counts, each per caller: the source address,
// except lateral-movement, counted per calling workload.
const (
	// SignalAuthFailure: refusals for a missing or bad credential
	// (reasons apikey_*, jwt_*, cert_*, issuers_not_defined), or the
	// reasons listed in the rule.
	SignalAuthFailure = "auth-failure"
	// SignalCredentialCycling: distinct API keys one source presented
	// that were refused (an auth-failure reason).
	SignalCredentialCycling = "credential-cycling"
	// SignalErrorRate: answers with a 4xx or 5xx status.
	SignalErrorRate = "error-rate"
	// SignalHygiene: requests refused as malformed.
	SignalHygiene = "hygiene"
	// SignalReplay: identical requests (method, host, path, key, user)
	// from one source.
	SignalReplay = "replay"
	// SignalLateral: east-west calls a sidecar's policy denies, and calls
	// on an edge (caller -> service) never seen before once the rule has
	// watched for one window.
	SignalLateral = "lateral-movement"
	// SignalWAFHit: requests the WAF blocked (waf: blocked), and, when the
	// rule sets wouldBlock, those a dry-run WAF rule would have blocked.
	SignalWAFHit = "waf-hit"
	// SignalVolume: requests per window above the caller's own baseline
	// (an exponentially weighted mean of its past windows) times the
	// rule's tolerance, counted per API key, else per user, else per
	// source address; the threshold is the least count that can fire, so
	// a quiet caller's first burst is not flagged.
	SignalVolume = "volume"
	// SignalRegistration: instances registered for one service (counted
	// per service): a burst is a workload announcing itself over and
	// over, or a stolen identity adding instances. Alert only.
	SignalRegistration = "registration"
)

// Signals lists the signals a rule may name.
var Signals = []string{SignalAuthFailure, SignalCredentialCycling, SignalErrorRate, SignalHygiene, SignalReplay, SignalLateral, SignalWAFHit, SignalVolume, SignalRegistration}

// Responses of a DetectionRule.
const (
	ResponseBan   = "ban"
	ResponseAlert = "alert"
)

// DetectionRuleSpec fires when one caller's count of a signal reaches
// Threshold within Window. Every firing is an audit record (detect.alert)
// with its evidence; with response ban and mode enforce it also bans the
// caller for BanTTL, unless an AllowList names the caller.
type DetectionRuleSpec struct {
	// Signal is one of Signals.
	Signal string `yaml:"signal"`
	// Threshold is the count that fires the rule; at least 1.
	Threshold int `yaml:"threshold"`
	// Window is the sliding window, a duration from 1s to 24h; default 1m.
	Window string `yaml:"window"`
	// Reasons narrow auth-failure to these refusal reasons.
	Reasons []string `yaml:"reasons,omitempty"`
	// Mode is enforce (the default) or dry-run: a dry-run rule records
	// what it would do and bans nobody.
	Mode Mode `yaml:"mode"`
	// Response is ban or alert; default ban, alert for error-rate,
	// lateral-movement, volume and registration (which can only alert).
	Response string `yaml:"response"`
	// BanTTL is how long a ban lasts; default 15m, at most 30 days.
	BanTTL string `yaml:"banTTL,omitempty"`
	// WouldBlock makes waf-hit also count the requests a dry-run WAF
	// would have blocked (waf: would_block).
	WouldBlock bool `yaml:"wouldBlock,omitempty"`
	// Tolerance is, for volume, the factor over the caller's baseline
	// that fires the rule; default 3, from 1.1 to 1000.
	Tolerance float64 `yaml:"tolerance,omitempty"`
}

// AllowListSpec names callers that detection never bans (health
// checkers, trusted networks). Rules still record what they see.
type AllowListSpec struct {
	// Sources are IP addresses or CIDRs.
	Sources []string `yaml:"sources,omitempty"`
	// APIKeys are API key prefixes.
	APIKeys []string `yaml:"apiKeys,omitempty"`
	// SPIFFEIDs are workload identities.
	SPIFFEIDs []string `yaml:"spiffeIDs,omitempty"`
}

func (s *DetectionRuleSpec) setDefaults() {
	if s.Window == "" {
		s.Window = "1m"
	}
	if s.Mode == "" {
		s.Mode = ModeEnforce
	}
	if s.Response == "" {
		s.Response = ResponseBan
		if s.Signal == SignalErrorRate || s.Signal == SignalLateral || s.Signal == SignalVolume || s.Signal == SignalRegistration {
			s.Response = ResponseAlert
		}
	}
	if s.Signal == SignalVolume && s.Tolerance == 0 {
		s.Tolerance = 3
	}
	if s.BanTTL == "" && s.Response == ResponseBan {
		s.BanTTL = "15m"
	}
	if len(s.Reasons) == 0 {
		s.Reasons = nil
	}
}

// WindowDuration and BanDuration return the parsed durations (zero when
// invalid: Validate reports it).
func (s *DetectionRuleSpec) WindowDuration() time.Duration {
	d, _ := time.ParseDuration(s.Window)
	return d
}

// BanDuration is the parsed BanTTL.
func (s *DetectionRuleSpec) BanDuration() time.Duration {
	d, _ := time.ParseDuration(s.BanTTL)
	return d
}

func (s *DetectionRuleSpec) validate(v validator) {
	if !slices.Contains(Signals, s.Signal) {
		v.errorf("spec.signal", "unknown signal %q (want %s)", s.Signal, strings.Join(Signals, ", "))
	}
	if s.Threshold < 1 || s.Threshold > 1_000_000 {
		v.errorf("spec.threshold", "threshold %d: want 1 to 1000000", s.Threshold)
	}
	if d, err := time.ParseDuration(s.Window); err != nil || d < time.Second || d > 24*time.Hour {
		v.errorf("spec.window", "window %q: want a duration from 1s to 24h, such as 1m", s.Window)
	}
	if s.WouldBlock && s.Signal != SignalWAFHit {
		v.errorf("spec.wouldBlock", "wouldBlock applies to the waf-hit signal only")
	}
	if s.Tolerance != 0 && s.Signal != SignalVolume {
		v.errorf("spec.tolerance", "tolerance applies to the volume signal only")
	}
	if s.Signal == SignalVolume && (s.Tolerance < 1.1 || s.Tolerance > 1000) {
		v.errorf("spec.tolerance", "tolerance %v: want a factor from 1.1 to 1000", s.Tolerance)
	}
	if s.Signal == SignalRegistration && s.Response == ResponseBan {
		v.errorf("spec.response", "the registration signal counts per service, not per caller: it can only alert")
	}
	if len(s.Reasons) > 0 && s.Signal != SignalAuthFailure {
		v.errorf("spec.reasons", "reasons apply to the auth-failure signal only")
	}
	for i, r := range s.Reasons {
		if r == "" || strings.ContainsAny(r, " \t") {
			v.errorf(fmt.Sprintf("spec.reasons[%d]", i), "invalid reason code %q", r)
		}
	}
	switch s.Mode {
	case ModeEnforce, ModeDryRun:
	default:
		v.errorf("spec.mode", "unknown mode %q (want enforce or dry-run)", s.Mode)
	}
	switch s.Response {
	case ResponseBan:
		if s.Signal == SignalLateral {
			v.errorf("spec.response", "lateral-movement can only alert: a workload's identity is not banned automatically")
		}
		if s.Signal == SignalVolume {
			v.errorf("spec.response", "volume can only alert: its caller may be an API key or a user, and growth is not an attack by itself")
		}
		if d, err := time.ParseDuration(s.BanTTL); err != nil || d < time.Second || d > 30*24*time.Hour {
			v.errorf("spec.banTTL", "banTTL %q: want a duration from 1s to 720h, such as 15m", s.BanTTL)
		}
	case ResponseAlert:
	default:
		v.errorf("spec.response", "unknown response %q (want ban or alert)", s.Response)
	}
}

func (s *AllowListSpec) setDefaults() {}

func (s *AllowListSpec) validate(v validator) {
	if len(s.Sources)+len(s.APIKeys)+len(s.SPIFFEIDs) == 0 {
		v.errorf("spec", "name at least one caller: sources, apiKeys or spiffeIDs")
	}
	for i, src := range s.Sources {
		b := BanSpec{Source: src}
		if _, ok := b.Prefix(); !ok {
			v.errorf(fmt.Sprintf("spec.sources[%d]", i), "invalid source %q: want an IP address or a CIDR", src)
		}
	}
	for i, k := range s.APIKeys {
		if !isKeyPrefix(k) {
			v.errorf(fmt.Sprintf("spec.apiKeys[%d]", i), "invalid API key prefix %q", k)
		}
	}
	for i, id := range s.SPIFFEIDs {
		if _, err := spiffeid.FromString(id); err != nil {
			v.errorf(fmt.Sprintf("spec.spiffeIDs[%d]", i), "invalid SPIFFE ID %q: %v", id, err)
		}
	}
}

// Allows reports whether the list names a (source address, API key
// prefix, SPIFFE ID); empty arguments match nothing.
func (s *AllowListSpec) Allows(addr netip.Addr, keyPrefix, id string) bool {
	for _, src := range s.Sources {
		b := BanSpec{Source: src}
		if p, ok := b.Prefix(); ok && addr.IsValid() && p.Contains(addr.Unmap()) {
			return true
		}
	}
	return keyPrefix != "" && slices.Contains(s.APIKeys, keyPrefix) || id != "" && slices.Contains(s.SPIFFEIDs, id)
}
