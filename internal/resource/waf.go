package resource

import (
	"fmt"

	"github.com/wardsec/ward/internal/waf"
)

// WAF is the input inspection of a Route (at the gateway) or a Service (at
// its sidecar): the OWASP Core Rule Set run by Coraza.
type WAF struct {
	// Mode is off (the default), dry-run (inspect, record what would have
	// been blocked, let it through) or enforce (refuse with 403, reason waf).
	Mode string `yaml:"mode,omitempty"`
	// Paranoia is the CRS paranoia level, 1 (the default) to 4: higher
	// levels run more rules and give more false positives.
	Paranoia int `yaml:"paranoia,omitempty"`
	// Threshold is the inbound anomaly score at which a request is blocked;
	// default 5 (one critical match).
	Threshold int `yaml:"threshold,omitempty"`
	// Body is the largest body inspected, as a size such as 128KiB (the
	// default) up to 16MiB.
	Body string `yaml:"body,omitempty"`
	// OverBound is what happens to a body larger than Body (or streamed):
	// refuse (the default: 403, reason waf) or pass (headers and URI
	// inspected, body not, and the record says so).
	OverBound string `yaml:"overBound,omitempty"`
	// Exclusions silence one rule on one parameter each.
	Exclusions []WAFExclusion `yaml:"exclusions,omitempty"`
}

// WAFExclusion silences rule Rule on parameter Parameter: a query or form
// field ("q"), a JSON field ("json.user.bio"), a header
// ("REQUEST_HEADERS:User-Agent") or a cookie ("REQUEST_COOKIES:session").
type WAFExclusion struct {
	Rule      int    `yaml:"rule"`
	Parameter string `yaml:"parameter"`
}

// Over-bound settings of WAF.OverBound.
const (
	WAFOverBoundRefuse = "refuse"
	WAFOverBoundPass   = "pass"
)

// WAFMode is the mode, validated when the resource was parsed.
func (w *WAF) WAFMode() waf.Mode {
	m, _ := waf.ParseMode(w.Mode)
	return m
}

// WAFOverBound is the over-bound setting.
func (w *WAF) WAFOverBound() waf.OverBound {
	if w.OverBound == WAFOverBoundPass {
		return waf.Pass
	}
	return waf.Refuse
}

// Settings is what the engine is compiled from.
func (w *WAF) Settings() waf.Settings {
	s := waf.Settings{Paranoia: w.Paranoia, Threshold: w.Threshold}
	if w.Body != "" {
		s.BodyLimit, _ = ParseSize(w.Body)
	}
	for _, e := range w.Exclusions {
		s.Exclusions = append(s.Exclusions, waf.Exclusion{Rule: e.Rule, Parameter: e.Parameter})
	}
	return s
}

func (w *WAF) validate(v validator) {
	if _, err := waf.ParseMode(w.Mode); err != nil {
		v.errorf("spec.waf.mode", "%v", err)
	}
	if w.Paranoia != 0 && (w.Paranoia < 1 || w.Paranoia > 4) {
		v.errorf("spec.waf.paranoia", "paranoia %d out of range 1-4", w.Paranoia)
	}
	if w.Threshold != 0 && (w.Threshold < 1 || w.Threshold > waf.MaxThreshold) {
		v.errorf("spec.waf.threshold", "threshold %d out of range 1-%d", w.Threshold, waf.MaxThreshold)
	}
	if w.Body != "" {
		n, err := ParseSize(w.Body)
		switch {
		case err != nil:
			v.errorf("spec.waf.body", "%v", err)
		case n < 1 || n > waf.MaxBodyLimit:
			v.errorf("spec.waf.body", "inspected body bound %s out of range 1B-16MiB", w.Body)
		}
	}
	switch w.OverBound {
	case "", WAFOverBoundRefuse, WAFOverBoundPass:
	default:
		v.errorf("spec.waf.overBound", "unknown setting %q (want refuse or pass)", w.OverBound)
	}
	seen := map[WAFExclusion]bool{}
	for i, e := range w.Exclusions {
		path := fmt.Sprintf("spec.waf.exclusions[%d]", i)
		if !waf.KnownRule(e.Rule) {
			v.errorf(path+".rule", "rule %d is not a request rule of the core rule set", e.Rule)
			continue
		}
		if err := (waf.Exclusion{Rule: e.Rule, Parameter: e.Parameter}).Validate(); err != nil {
			v.errorf(path+".parameter", "%v", err)
			continue
		}
		if seen[e] {
			v.errorf(path, "duplicate exclusion of rule %d on %s", e.Rule, e.Parameter)
		}
		seen[e] = true
	}
}
