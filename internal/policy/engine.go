package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/wardsec/ward/internal/resource"
)

// Reason codes of decisions. They are stable: audit records and metrics
// keep them, and they are safe to show to clients.
const (
	ReasonAllowed        = "allowed"
	ReasonNoPolicy       = "no_policy"
	ReasonNoRuleMatches  = "no_rule_matches"
	ReasonAmbiguousPath  = "ambiguous_path"
	ReasonConditionError = "condition_error"
)

// Request is what a decision is about.
type Request struct {
	// Target is the name of the service called.
	Target string
	// Peer is the caller's verified identity; the zero ID for none.
	Peer spiffeid.ID
	// Method is the HTTP method.
	Method string
	// Path is the path as received, percent-encoded (r.URL.EscapedPath()).
	Path string
	// Header is the request's header, for conditions; may be nil.
	Header http.Header
	// Claims are the end user's claims, for conditions (as user); may be nil.
	Claims map[string]any
}

// Decision is the outcome of Decide.
type Decision struct {
	// Allow says whether the request may proceed.
	Allow bool
	// DryRun is set when dry-run policies decided: a denial was reported,
	// not applied (Allow is true and Reason says why it would be denied).
	DryRun bool
	// Policy names the policy that decided; policies that all denied are
	// comma-separated. Empty when no policy was involved.
	Policy string
	// Rule is the index of the deciding rule in its policy; -1 for none.
	Rule int
	// Reason is a stable code: one of the Reason constants.
	Reason string
	// Message explains the decision to operators, such as "denied by
	// orders-callers: no rule matches svc/catalog GET /orders/1". It may
	// quote the request and the cause of a failed condition: log it and
	// audit it, but show clients the Reason only.
	Message string
}

// Engine decides requests with compiled policies. It is immutable and safe for
// concurrent use.
type Engine struct {
	td      spiffeid.TrustDomain
	targets map[string]*target
	routes  map[string]*condition // Route name -> its auth.when condition
}

// target holds the policies of one service by mode; nil when there is none of
// that mode.
type target struct {
	enforce, dryRun *ruleSet
}

// add returns the rule set of a mode, adding a policy to it.
func (t *target) add(mode resource.Mode, policy string) *ruleSet {
	set := &t.enforce
	if mode == resource.ModeDryRun {
		set = &t.dryRun
	}
	if *set == nil {
		*set = &ruleSet{policies: policy}
	} else {
		(*set).policies += "," + policy
	}
	return *set
}

// ruleSet is the rules of one or more policies, in the order of policy name
// and rule index.
type ruleSet struct {
	policies string // names, comma-separated
	rules    []rule
}

type rule struct {
	policy  string
	index   int
	from    []idPattern
	methods methodSet
	paths   []pathPattern
	cond    *condition // nil without a condition
	allowed string     // message of the decisions it allows
}

// Compile builds an engine from a complete set of objects (a snapshot, or
// everything applied together): it validates the set as [resource.Validate]
// does and compiles its AccessPolicies for callers of trust domain td. It
// reports every problem as a [resource.ErrorList] located by file and line:
// with the problems of the set, conditions that do not compile and path
// patterns that are not canonical.
func Compile(td spiffeid.TrustDomain, objs []resource.Object) (*Engine, error) {
	if td.IsZero() {
		return nil, errors.New("policy: no trust domain")
	}
	errs := resource.AsList(resource.Validate(objs))
	e := &Engine{td: td, targets: map[string]*target{}, routes: map[string]*condition{}}
	var pols []*resource.Object
	for i := range objs {
		if _, ok := objs[i].Spec.(*resource.AccessPolicySpec); ok && objs[i].Kind == resource.KindAccessPolicy {
			pols = append(pols, &objs[i])
		}
	}
	slices.SortStableFunc(pols, func(a, b *resource.Object) int { return cmp.Compare(a.Metadata.Name, b.Metadata.Name) })
	for _, o := range pols {
		spec := o.Spec.(*resource.AccessPolicySpec)
		t := e.targets[spec.Target]
		if t == nil {
			t = new(target)
			e.targets[spec.Target] = t
		}
		set := t.add(spec.Mode, o.Metadata.Name)
		for i, r := range spec.Rules {
			cr, rerrs := compileRule(o, i, r)
			errs = append(errs, rerrs...)
			set.rules = append(set.rules, cr)
		}
	}
	for i := range objs {
		o := &objs[i]
		if r, ok := o.Spec.(*resource.RouteSpec); ok && o.Kind == resource.KindRoute && r.Auth.When != "" {
			c, err := compileCondition(r.Auth.When)
			if err != nil {
				errs = append(errs, o.Origin.Errorf("spec.auth.when", "%v", err))
			}
			e.routes[o.Metadata.Name] = c
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return e, nil
}

// RouteCondition evaluates the auth.when condition of the Route named route
// for req (request, peer and user as in AccessPolicy conditions). A route
// without a condition holds; an evaluation error does not (fail closed).
func (e *Engine) RouteCondition(route string, req Request) (bool, error) {
	c := e.routes[route]
	if c == nil {
		return true, nil
	}
	path, err := NormalizePath(req.Path)
	if err != nil {
		return false, err
	}
	return c.eval(&call{req: req, method: req.Method, path: path})
}

func compileRule(o *resource.Object, index int, r resource.Rule) (rule, resource.ErrorList) {
	var errs resource.ErrorList
	path := fmt.Sprintf("spec.rules[%d]", index)
	cr := rule{
		policy:  o.Metadata.Name,
		index:   index,
		methods: newMethodSet(r.Methods),
		allowed: fmt.Sprintf("allowed by %s rule %d", o.Metadata.Name, index),
	}
	for _, p := range r.From {
		cr.from = append(cr.from, newIDPattern(p))
	}
	for j, p := range r.Paths {
		pp, err := newPathPattern(p)
		if err != nil {
			errs = append(errs, o.Origin.Errorf(fmt.Sprintf("%s.paths[%d]", path, j), "%v", err))
		}
		if r.PathsCaseInsensitive {
			pp.s, pp.fold = asciiLower(pp.s), true
		}
		cr.paths = append(cr.paths, pp)
	}
	if r.When != "" {
		c, err := compileCondition(r.When)
		if err != nil {
			errs = append(errs, o.Origin.Errorf(path+".when", "%v", err))
		}
		cr.cond = c
	}
	return cr, errs
}

// Decide says whether req is allowed. It never fails: whatever goes wrong
// denies, with a reason.
func (e *Engine) Decide(req Request) Decision {
	path, err := NormalizePath(req.Path)
	if err != nil {
		return Decision{Rule: -1, Reason: ReasonAmbiguousPath, Message: "denied: " + err.Error()}
	}
	t := e.targets[req.Target]
	if t == nil {
		return Decision{Rule: -1, Reason: ReasonNoPolicy, Message: fmt.Sprintf("denied: no policy for service %q", req.Target)}
	}
	c := call{req: req, method: strings.ToUpper(req.Method), path: path}
	c.methodBit = methodBit(c.method)
	if req.Peer.MemberOf(e.td) {
		c.peerPath = req.Peer.Path()
	}
	if t.enforce != nil {
		return t.enforce.decide(&c)
	}
	d := t.dryRun.decide(&c)
	d.DryRun = true
	if !d.Allow {
		d.Allow = true
		d.Message = "not enforced (dry run): " + d.Message
	}
	return d
}

// call is one request being decided.
type call struct {
	req       Request
	method    string
	methodBit methodSet
	path      string
	peerPath  string      // the caller's ID path; "" outside the trust domain
	vars      *activation // for conditions, made on first use
}

func (s *ruleSet) decide(c *call) Decision {
	failed, condErr := -1, error(nil)
	for i := range s.rules {
		r := &s.rules[i]
		if r.methods&c.methodBit == 0 || !r.matchPeer(c.peerPath) || !r.matchPath(c.path) {
			continue
		}
		if r.cond != nil {
			ok, err := r.cond.eval(c)
			if err != nil && failed < 0 {
				failed, condErr = i, err
			}
			if !ok {
				continue
			}
		}
		return Decision{Allow: true, Policy: r.policy, Rule: r.index, Reason: ReasonAllowed, Message: r.allowed}
	}
	if failed >= 0 {
		r := &s.rules[failed]
		return Decision{Policy: r.policy, Rule: r.index, Reason: ReasonConditionError,
			Message: fmt.Sprintf("denied by %s: condition of rule %d failed: %v", r.policy, r.index, condErr)}
	}
	return Decision{Policy: s.policies, Rule: -1, Reason: ReasonNoRuleMatches,
		Message: fmt.Sprintf("denied by %s: no rule matches %s %s %s", s.policies, c.caller(), c.method, c.path)}
}

// caller names the caller for messages: the ID path within the trust domain,
// the whole ID outside it.
func (c *call) caller() string {
	switch {
	case c.req.Peer.IsZero():
		return "(no identity)"
	case c.peerPath != "":
		return c.peerPath[1:]
	}
	return c.req.Peer.String()
}

func (r *rule) matchPeer(peerPath string) bool {
	if peerPath == "" {
		return false
	}
	for _, p := range r.from {
		if p.match(peerPath) {
			return true
		}
	}
	return false
}

func (r *rule) matchPath(path string) bool {
	for _, p := range r.paths {
		if p.fold {
			if p.matchFolded(path) {
				return true
			}
			continue
		}
		if p.prefix && strings.HasPrefix(path, p.s) || path == p.s {
			return true
		}
	}
	return false
}

// matchFolded reports whether the canonical path matches a fold pattern:
// as a prefix or exactly, whatever the case of its ASCII letters.
func (p *pathPattern) matchFolded(path string) bool {
	if p.prefix && len(path) >= len(p.s) || len(path) == len(p.s) {
		return asciiEqualLower(path[:len(p.s)], p.s)
	}
	return false
}

// asciiLower lowercases the ASCII letters of s. A canonical path carries
// every byte outside ASCII percent-encoded, so folding ASCII is folding all
// its letters; letters outside ASCII are left as they are.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// asciiEqualLower reports whether s equals lower, an ASCII-lowercased
// string, when the ASCII letters of s are lowercased.
func asciiEqualLower(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// idPattern matches SPIFFE ID paths segment by segment, "*" matching any one
// segment. A nil pattern matches every ID.
type idPattern []string

func newIDPattern(p string) idPattern {
	if p == "*" {
		return nil
	}
	return strings.Split(p, "/")
}

// match reports whether the ID path ("/svc/catalog") matches.
func (p idPattern) match(path string) bool {
	if p == nil {
		return true
	}
	for _, seg := range p {
		if path == "" || path[0] != '/' {
			return false
		}
		path = path[1:]
		n := strings.IndexByte(path, '/')
		if n < 0 {
			n = len(path)
		}
		if seg != "*" && seg != path[:n] {
			return false
		}
		path = path[n:]
	}
	return path == ""
}

// pathPattern is an exact path, or a prefix ending with '/'. With fold,
// s is lowercased and matched whatever the case of ASCII letters.
type pathPattern struct {
	s      string
	prefix bool
	fold   bool
}

// newPathPattern compiles a pattern; it must be canonical, as requests are,
// or it could never match.
func newPathPattern(p string) (pathPattern, error) {
	pp := pathPattern{s: p}
	if base, ok := strings.CutSuffix(p, "*"); ok {
		pp = pathPattern{s: base, prefix: true}
	}
	canon, err := NormalizePath(pp.s)
	switch {
	case err != nil:
		return pp, fmt.Errorf("path %q can never match: requests with it are refused: %w", p, err)
	case canon != pp.s:
		if pp.prefix {
			canon += "*"
		}
		return pp, fmt.Errorf("path %q is not canonical: write %q", p, canon)
	}
	return pp, nil
}

// methodSet is a set of methods as bits: one per resource.HTTPMethods, and
// one for all others.
type methodSet uint16

const anyMethod = ^methodSet(0)

func newMethodSet(methods []string) methodSet {
	var s methodSet
	for _, m := range methods {
		if m == resource.AnyMethod {
			return anyMethod
		}
		s |= methodBit(m)
	}
	return s
}

// methodBit returns the bit of an upper-case method.
func methodBit(m string) methodSet {
	for i, known := range resource.HTTPMethods {
		if m == known {
			return 1 << i
		}
	}
	return 1 << len(resource.HTTPMethods)
}
