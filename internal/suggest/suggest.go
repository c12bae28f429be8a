// Package suggest writes least-privilege AccessPolicies from observed
// traffic: from the flows of a window, the smallest set of rules (callers,
// methods and path patterns) that admits exactly the calls that were let
// through, and a replay of that traffic against the suggestion.
//
// Flows carry path templates ("/orders/{id}/items"); AccessPolicy paths
// are exact paths or prefixes ("/orders/*"). A template without {id} (or
// {rest}, {other}) becomes that exact path; one with them becomes the
// prefix up to its first such segment: "/orders/{id}/items" admits
// "/orders/*". That is the narrowest pattern the policy language has for
// it, and it admits more than was seen below that prefix.
package suggest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/resource"
)

// Observed reports whether an edge is traffic the suggestion must admit:
// calls let through (allowed, or only denied in dry run) from a caller
// with an identity of the trust domain ("svc/catalog", "gateway/edge").
func Observed(e flows.Record) bool {
	if e.Decision != flows.Allow && e.Decision != flows.WouldDeny {
		return false
	}
	return callerPath(e.Source)
}

// callerPath reports whether s is a SPIFFE ID path of the trust domain,
// as sidecars report callers: segments without the leading slash.
func callerPath(s string) bool {
	if s == "" || strings.HasPrefix(s, "spiffe:") || !strings.Contains(s, "/") || strings.HasPrefix(s, "/") {
		return false
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "" || seg == "*" {
			return false
		}
	}
	return true
}

// Pattern is the AccessPolicy path that admits a template.
func Pattern(template string) string {
	if template == flows.OtherPath || !strings.HasPrefix(template, "/") {
		return "/*"
	}
	i := strings.IndexByte(template, '{')
	if i < 0 {
		return template
	}
	prefix := template[:i]
	if j := strings.LastIndexByte(prefix, '/'); j >= 0 {
		prefix = prefix[:j+1]
	}
	return prefix + "*"
}

// Suggest returns one AccessPolicy per service called in edges (only
// service's, when set) admitting exactly its observed traffic. A
// suggestion replaces the service's current policy: it takes the name and
// mode of the first one (by name) targeting it; a service without one gets
// SERVICE-callers in dry-run mode.
func Suggest(edges []flows.Record, current []resource.Object, service string) []resource.Object {
	// dest -> caller -> path pattern -> methods
	seen := map[string]map[string]map[string]map[string]bool{}
	for _, e := range edges {
		if !Observed(e) || (service != "" && e.Dest != service) || e.Dest == "-" {
			continue
		}
		callers := seen[e.Dest]
		if callers == nil {
			callers = map[string]map[string]map[string]bool{}
			seen[e.Dest] = callers
		}
		paths := callers[e.Source]
		if paths == nil {
			paths = map[string]map[string]bool{}
			callers[e.Source] = paths
		}
		p := Pattern(e.Path)
		if paths[p] == nil {
			paths[p] = map[string]bool{}
		}
		paths[p][strings.ToUpper(e.Method)] = true
	}
	var out []resource.Object
	for _, dest := range sortedKeys(seen) {
		name, mode := dest+"-callers", resource.ModeDryRun
		if cur := currentPolicies(current, dest); len(cur) > 0 {
			name, mode = cur[0].Metadata.Name, cur[0].Spec.(*resource.AccessPolicySpec).Mode
		}
		out = append(out, resource.Object{
			APIVersion: resource.APIVersion, Kind: resource.KindAccessPolicy, Metadata: resource.Metadata{Name: name},
			Spec: &resource.AccessPolicySpec{Target: dest, Mode: mode, Rules: rules(seen[dest])},
		})
	}
	return out
}

// rules turns one service's observed calls into the fewest rules: an exact
// path covered by a prefix of the same caller with the same methods is
// dropped, a caller's paths with the same methods share a rule, and
// callers with the same methods and paths share one.
func rules(callers map[string]map[string]map[string]bool) []resource.Rule {
	type sig struct{ methods, paths string }
	from := map[sig][]string{}
	for _, caller := range sortedKeys(callers) {
		paths := callers[caller]
		for p, ms := range paths {
			for q, qms := range paths {
				if q != p && strings.HasSuffix(q, "/*") && covers(q, p) {
					for m := range ms {
						if qms[m] {
							delete(ms, m)
						}
					}
				}
			}
		}
		byMethods := map[string][]string{}
		for _, p := range sortedKeys(paths) {
			if len(paths[p]) == 0 {
				continue
			}
			ms := strings.Join(sortedKeys(paths[p]), ",")
			byMethods[ms] = append(byMethods[ms], p)
		}
		for ms, ps := range byMethods {
			s := sig{ms, strings.Join(ps, ",")}
			from[s] = append(from[s], caller)
		}
	}
	var out []resource.Rule
	for s, callers := range from {
		slices.Sort(callers)
		out = append(out, resource.Rule{From: callers, Methods: strings.Split(s.methods, ","), Paths: strings.Split(s.paths, ",")})
	}
	slices.SortFunc(out, func(a, b resource.Rule) int {
		return cmp.Or(cmp.Compare(strings.Join(a.From, ","), strings.Join(b.From, ",")),
			cmp.Compare(strings.Join(a.Paths, ","), strings.Join(b.Paths, ",")),
			cmp.Compare(strings.Join(a.Methods, ","), strings.Join(b.Methods, ",")))
	})
	return out
}

// covers reports whether the prefix pattern q ("/orders/*") matches every
// path p stands for.
func covers(q, p string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(q, "*"))
}

// currentPolicies returns the AccessPolicies of current targeting dest,
// by name.
func currentPolicies(current []resource.Object, dest string) []resource.Object {
	var out []resource.Object
	for _, o := range current {
		if s, ok := o.Spec.(*resource.AccessPolicySpec); ok && o.Kind == resource.KindAccessPolicy && s.Target == dest {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b resource.Object) int { return cmp.Compare(a.Metadata.Name, b.Metadata.Name) })
	return out
}

// Replace returns current with the AccessPolicies of each suggested
// policy's target replaced by the suggestion.
func Replace(current, suggested []resource.Object) []resource.Object {
	targets := map[string]bool{}
	for _, s := range suggested {
		targets[s.Spec.(*resource.AccessPolicySpec).Target] = true
	}
	var out []resource.Object
	for _, o := range current {
		if s, ok := o.Spec.(*resource.AccessPolicySpec); ok && o.Kind == resource.KindAccessPolicy && targets[s.Target] {
			continue
		}
		out = append(out, o)
	}
	return append(out, suggested...)
}

// Verdict is the replay of one observed edge against a suggestion.
type Verdict struct {
	Edge     flows.Record
	Decision policy.Decision
}

// Replay decides each observed edge of the suggested services with the
// set current would become (the suggestion replacing the services'
// policies, every policy taken as enforced) and returns the edges it
// would deny. None is the promise of a suggestion.
func Replay(td spiffeid.TrustDomain, current, suggested []resource.Object, edges []flows.Record) ([]Verdict, error) {
	set := Replace(current, suggested)
	enforced := make([]resource.Object, len(set))
	targets := map[string]bool{}
	for i, o := range set {
		enforced[i] = o
		if s, ok := o.Spec.(*resource.AccessPolicySpec); ok && o.Kind == resource.KindAccessPolicy {
			c := *s
			c.Mode = resource.ModeEnforce
			enforced[i].Spec = &c
		}
	}
	for _, s := range suggested {
		targets[s.Spec.(*resource.AccessPolicySpec).Target] = true
	}
	eng, err := policy.Compile(td, enforced)
	if err != nil {
		return nil, fmt.Errorf("the suggestion does not compile: %w", err)
	}
	var denied []Verdict
	for _, e := range edges {
		if !Observed(e) || !targets[e.Dest] {
			continue
		}
		peer, err := spiffeid.FromPath(td, "/"+e.Source)
		if err != nil {
			continue
		}
		d := eng.Decide(policy.Request{Target: e.Dest, Peer: peer, Method: e.Method, Path: Example(e.Path)})
		if !d.Allow {
			denied = append(denied, Verdict{Edge: e, Decision: d})
		}
	}
	return denied, nil
}

// Example returns a concrete path a template stands for: {id} becomes 1,
// {rest} and {other} become x.
func Example(template string) string {
	if !strings.HasPrefix(template, "/") {
		return "/x"
	}
	r := strings.NewReplacer(flows.IDSegment, "1", flows.RestSegment, "x", flows.OtherPath, "x")
	return r.Replace(template)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
