package detect

import (
	"github.com/wardsec/ward/internal/resource"
)

// defaultRules are the DetectionRules Ward ships: one per signal. A
// DetectionRule of the same name in the resource set replaces one (set
// its mode to dry-run to only watch, or raise its threshold).
const defaultRules = `apiVersion: ward/v1
kind: DetectionRule
metadata: {name: auth-failures}
spec: {signal: auth-failure, threshold: 20, window: 1m, response: ban, banTTL: 15m}
---
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: credential-cycling}
spec: {signal: credential-cycling, threshold: 5, window: 1m, response: ban, banTTL: 1h}
---
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: error-rate}
spec: {signal: error-rate, threshold: 200, window: 1m, response: alert}
---
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: malformed-requests}
spec: {signal: hygiene, threshold: 10, window: 1m, response: ban, banTTL: 15m}
---
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: replay}
spec: {signal: replay, threshold: 100, window: 10s, response: alert}
---
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: lateral-movement}
spec: {signal: lateral-movement, threshold: 1, window: 1m, response: alert}
---
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: waf-hits}
spec: {signal: waf-hit, threshold: 5, window: 1m, response: ban, banTTL: 15m}
---
# Alert only: a caller's own growth (a batch job, a launch) exceeds its
# baseline too, and rate limits already cap what it can send; a person
# decides, with the evidence, whether to ban.
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: volume-spike}
spec: {signal: volume, threshold: 300, window: 1m, tolerance: 4, response: alert}
---
# Alert only: a rollout registers every instance of a service anew; more
# than that in a minute is a sidecar crash-looping or a stolen identity
# adding instances.
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: registration-burst}
spec: {signal: registration, threshold: 30, window: 1m, response: alert}
`

// DefaultRuleCount is how many rules Ward ships.
const DefaultRuleCount = 9

var defaults = mustParse(defaultRules)

func mustParse(doc string) []resource.Object {
	objs, err := resource.Parse("default detection rules", []byte(doc))
	if err != nil {
		panic(err)
	}
	return objs
}

// Defaults returns the DetectionRules Ward ships.
func Defaults() []resource.Object { return append([]resource.Object(nil), defaults...) }

// WithDefaults returns objs with the default DetectionRules that no
// DetectionRule of objs overrides by name, in canonical order.
func WithDefaults(objs []resource.Object) []resource.Object {
	have := map[string]bool{}
	for _, o := range objs {
		if o.Kind == resource.KindDetectionRule {
			have[o.Metadata.Name] = true
		}
	}
	out := append([]resource.Object(nil), objs...)
	for _, o := range defaults {
		if !have[o.Metadata.Name] {
			out = append(out, o)
		}
	}
	return out
}
