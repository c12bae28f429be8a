package detect

import (
	"hash/maphash"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/resource"
)

// DefaultCapacity is how many callers each rule tracks at most. A new
// caller beyond it evicts the weakest of a few sampled entries (the
// lowest count), so a spray of millions of addresses or keys costs at
// most Capacity entries per rule and a caller with a high count is very
// unlikely to be evicted by callers seen once.
const DefaultCapacity = 50_000

// evictSample is how many entries an eviction compares.
const evictSample = 8

// maxSamples is how many request ids a detection carries as evidence.
const maxSamples = 5

// maxDetails is how many distinct details (WAF rule ids) a detection
// carries as evidence.
const maxDetails = 10

// Detection is one firing of a rule, with its evidence.
type Detection struct {
	Rule    string
	Signal  string
	Caller  string // the source address, or the calling workload for lateral-movement
	Target  string // what the caller reached, when the signal names it (lateral-movement: the service)
	Count   int    // the signal's count in the window when the rule fired
	Window  time.Duration
	Samples []string // request ids of records that counted
	// Details is further evidence, when the signal has some (waf-hit:
	// the WAF rule ids seen, at most maxDetails).
	Details []string
	// Baseline is, for volume, the caller's baseline (requests per
	// window) the count exceeded.
	Baseline float64
	Response string // ban or alert
	BanTTL   time.Duration
	DryRun   bool
	// Allowed is set when an AllowList names the caller: never banned.
	Allowed bool
	Time    time.Time
}

// Ban reports whether the detection asks for a ban now.
func (d *Detection) Ban() bool { return d.Response == resource.ResponseBan && !d.DryRun && !d.Allowed }

// counter is one caller's state for one rule: a sliding window
// estimated from the count of the current window and of the previous one.
type counter struct {
	start     time.Time
	cur, prev int
	distinct  []uint64 // credential-cycling: the keys seen in the current window (at most the threshold)
	prevDist  int
	samples   []string
	details   []string // waf-hit: the WAF rule ids seen in the current window
	fired     time.Time
	baseline  float64 // volume: exponentially weighted mean of past windows' counts
	windows   int     // volume: how many windows the baseline has seen
}

// baselineWeight is the weight of the last window in a volume baseline:
// it follows a change of habit within a few windows.
const baselineWeight = 0.3

// rollBaseline moves a volume counter's fixed window on to now, folding
// each window that ended into the baseline (windows without requests
// count as zero).
func (c *counter) rollBaseline(now time.Time, window time.Duration) {
	d := now.Sub(c.start)
	if d < window {
		return
	}
	k := int(d / window)
	c.baseline = baselineWeight*float64(c.cur) + (1-baselineWeight)*c.baseline
	for i := 1; i < k && i < 64 && c.baseline > 1e-3; i++ {
		c.baseline *= 1 - baselineWeight
	}
	c.windows += k
	c.start = c.start.Add(time.Duration(k) * window)
	c.cur, c.samples = 0, c.samples[:0]
}

// estimate is the count over the last window at now.
func (c *counter) estimate(now time.Time, window time.Duration, n int, prev int) float64 {
	elapsed := now.Sub(c.start)
	w := 1 - float64(elapsed)/float64(window)
	if w < 0 {
		w = 0
	}
	return float64(prev)*w + float64(n)
}

// roll moves the window on to now.
func (c *counter) roll(now time.Time, window time.Duration) {
	switch d := now.Sub(c.start); {
	case d < window:
		return
	case d < 2*window:
		c.prev, c.prevDist = c.cur, len(c.distinct)
		c.start = c.start.Add(window)
	default:
		c.prev, c.prevDist = 0, 0
		c.start = now
	}
	c.cur, c.distinct, c.samples, c.details = 0, c.distinct[:0], c.samples[:0], c.details[:0]
}

type rule struct {
	name    string
	spec    resource.DetectionRuleSpec
	window  time.Duration
	ttl     time.Duration
	reasons map[string]bool
	callers map[string]*counter
	since   time.Time           // lateral-movement: when the rule began learning edges
	edges   map[string]struct{} // lateral-movement: caller -> service edges seen
}

// Detector reads the request records once, as the server ingests them
// from every gateway and sidecar, and fires the rules. Safe for
// concurrent use.
type Detector struct {
	mu       sync.Mutex
	rules    []*rule
	allow    []resource.AllowListSpec
	capacity int
	seed     maphash.Seed
	evicted  uint64
	buf      []byte // a volume caller's key, for the lookup
}

// New returns a detector tracking at most capacity callers per rule (0:
// DefaultCapacity).
func New(capacity int) *Detector {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Detector{capacity: capacity, seed: maphash.MakeSeed()}
}

// Configure sets the rules and allow-lists from objs (the defaults,
// overridden by name by the set's DetectionRules: see WithDefaults).
// The state of a rule whose spec did not change is kept.
func (d *Detector) Configure(objs []resource.Object) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := map[string]*rule{}
	for _, r := range d.rules {
		old[r.name] = r
	}
	d.rules, d.allow = nil, nil
	for _, o := range objs {
		switch s := o.Spec.(type) {
		case *resource.DetectionRuleSpec:
			if o.Kind != resource.KindDetectionRule {
				continue
			}
			if r := old[o.Metadata.Name]; r != nil && specEqual(&r.spec, s) {
				d.rules = append(d.rules, r)
				continue
			}
			r := &rule{name: o.Metadata.Name, spec: *s, window: s.WindowDuration(), ttl: s.BanDuration(),
				callers: map[string]*counter{}, since: time.Now()}
			if r.window <= 0 {
				continue
			}
			if len(s.Reasons) > 0 {
				r.reasons = map[string]bool{}
				for _, x := range s.Reasons {
					r.reasons[x] = true
				}
			}
			if s.Signal == resource.SignalLateral {
				r.edges = map[string]struct{}{}
			}
			d.rules = append(d.rules, r)
		case *resource.AllowListSpec:
			if o.Kind == resource.KindAllowList {
				d.allow = append(d.allow, *s)
			}
		}
	}
}

func specEqual(a, b *resource.DetectionRuleSpec) bool {
	return a.Signal == b.Signal && a.Threshold == b.Threshold && a.Window == b.Window && slices.Equal(a.Reasons, b.Reasons) &&
		a.Mode == b.Mode && a.Response == b.Response && a.BanTTL == b.BanTTL && a.WouldBlock == b.WouldBlock && a.Tolerance == b.Tolerance
}

// Tracked returns how many callers the rules track in all, and how many
// were evicted to stay within the capacity.
func (d *Detector) Tracked() (tracked int, evicted uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.rules {
		tracked += len(r.callers) + len(r.edges)
	}
	return tracked, d.evicted
}

// authReason reports whether a refusal reason is a failed credential.
func authReason(reason string) bool {
	for _, p := range [...]string{"apikey_", "jwt_", "cert_"} {
		if strings.HasPrefix(reason, p) && !strings.HasSuffix(reason, "_unavailable") {
			return true
		}
	}
	return reason == "issuers_not_defined"
}

// hostOf returns the address of "ip:port" or "ip".
func hostOf(s string) string {
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return s
}

// Observe reads one record and returns the detections it fires.
func (d *Detector) Observe(e *audit.Event) []Detection {
	// A forwarded request has two gateway records, the decision and the
	// response; only the one with the answer's status counts.
	status, keyPrefix := e.HTTP.Status, e.Field("key_prefix")
	if status == 0 {
		status, _ = strconv.Atoi(e.Fields["status"]) // a record read back from a log keeps its members in Fields
	}
	gateway := (e.Type == "gateway.request" || e.Type == "gateway.response") && status != 0
	sidecar := e.Type == "sidecar.request"
	registration := e.Type == "instance.register"
	if !gateway && !sidecar && !registration {
		return nil
	}
	now := e.Time
	if now.IsZero() {
		now = time.Now()
	}
	source := hostOf(e.Source)
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Detection
	for _, r := range d.rules {
		caller, target, item := "", "", uint64(0)
		kind := "" // volume: what caller is, when not an address or a workload
		if registration != (r.spec.Signal == resource.SignalRegistration) {
			continue // registrations count for their own signal only
		}
		switch r.spec.Signal {
		case resource.SignalRegistration:
			caller = e.Service
		case resource.SignalAuthFailure:
			if e.Decision != "deny" || (r.reasons != nil && !r.reasons[e.Reason]) || (r.reasons == nil && !authReason(e.Reason)) {
				continue
			}
			caller = source
		case resource.SignalCredentialCycling:
			if !gateway || keyPrefix == "" || e.Decision != "deny" || !authReason(e.Reason) {
				continue // keys tried and refused, not keys that work
			}
			caller, item = source, maphash.String(d.seed, keyPrefix)
		case resource.SignalErrorRate:
			if status < 400 {
				continue
			}
			caller = source
		case resource.SignalHygiene:
			if e.Reason != "malformed_request" && e.Reason != "ambiguous_path" && e.Reason != "body_malformed" {
				continue
			}
			caller = source
		case resource.SignalReplay:
			if !gateway {
				continue
			}
			caller = source
			target = e.Field("method") + " " + e.Field("host") + e.Field("path")
		case resource.SignalWAFHit:
			if waf := e.Field("waf"); waf != "blocked" && (waf != "would_block" || !r.spec.WouldBlock) {
				continue
			}
			caller = source
		case resource.SignalVolume:
			switch {
			case e.Decision == "deny" || !gateway && !sidecar:
				continue // refusals are other signals'
			case keyPrefix != "":
				kind, caller = "apikey:", keyPrefix
			case e.User != "":
				kind, caller = "user:", e.User
			case sidecar:
				caller = e.Actor
			default:
				caller = source
			}
		case resource.SignalLateral:
			if !sidecar || !strings.Contains(e.Actor, "/svc/") {
				continue
			}
			caller, target = e.Actor, e.Service
			edge := caller + "\x00" + target
			_, seen := r.edges[edge]
			if !seen && len(r.edges) < d.capacity {
				r.edges[edge] = struct{}{}
			}
			denied := e.Decision == "deny" && (e.Reason == "no_rule_matches" || e.Reason == "no_policy")
			learned := now.Sub(r.since) >= r.window
			if !denied && (seen || !learned) {
				continue
			}
		}
		if caller == "" {
			continue
		}
		key := caller
		if r.spec.Signal == resource.SignalReplay {
			key = caller + "\x00" + target + "\x00" + keyPrefix + "\x00" + e.User
		}
		var c *counter
		if kind != "" { // looked up without building the string
			d.buf = append(append(d.buf[:0], kind...), caller...)
			c = r.callers[string(d.buf)]
			if c == nil {
				key = string(d.buf)
			}
		} else {
			c = r.callers[key]
		}
		if c == nil {
			if len(r.callers) >= d.capacity {
				d.evict(r, now)
			}
			c = &counter{start: now}
			r.callers[key] = c
		}
		if r.spec.Signal == resource.SignalVolume {
			if det, ok := d.volume(r, c, e, kind, caller, now); ok {
				out = append(out, det)
			}
			continue
		}
		c.roll(now, r.window)
		var est float64
		if r.spec.Signal == resource.SignalCredentialCycling {
			if !slices.Contains(c.distinct, item) && len(c.distinct) < r.spec.Threshold {
				c.distinct = append(c.distinct, item)
			}
			est = c.estimate(now, r.window, len(c.distinct), c.prevDist)
		} else {
			c.cur++
			est = c.estimate(now, r.window, c.cur, c.prev)
		}
		if len(c.samples) < maxSamples {
			id := e.RequestID
			if id == "" {
				id = e.HTTP.RequestID
			}
			if id != "" {
				c.samples = append(c.samples, id)
			}
		}
		if r.spec.Signal == resource.SignalWAFHit {
			c.addDetails(e.Field("waf_rules"))
		}
		if int(est+0.5) < r.spec.Threshold {
			continue
		}
		// Fired: the count starts again, so the rule fires again only
		// after as many events more (records still in flight before a
		// ban is enforced, or the same attack after a ban was lifted).
		c.fired = now
		det := Detection{Rule: r.name, Signal: r.spec.Signal, Caller: caller, Target: target, Count: int(est + 0.5), Window: r.window,
			Samples: slices.Clone(c.samples), Details: slices.Clone(c.details), Response: r.spec.Response, BanTTL: r.ttl, DryRun: r.spec.Mode == resource.ModeDryRun, Time: now}
		c.cur, c.prev, c.prevDist, c.distinct, c.samples, c.details = 0, 0, 0, c.distinct[:0], c.samples[:0], c.details[:0]
		det.Allowed = d.allowed(caller)
		out = append(out, det)
	}
	return out
}

// volume counts one request of caller and fires when the current window
// reaches the rule's threshold and exceeds the baseline times the
// tolerance, once per window.
func (d *Detector) volume(r *rule, c *counter, e *audit.Event, kind, caller string, now time.Time) (Detection, bool) {
	c.rollBaseline(now, r.window)
	c.cur++
	if id := e.RequestID; len(c.samples) < maxSamples && (id != "" || e.HTTP.RequestID != "") {
		if id == "" {
			id = e.HTTP.RequestID
		}
		c.samples = append(c.samples, id)
	}
	if c.cur < r.spec.Threshold || float64(c.cur) <= c.baseline*r.spec.Tolerance || !c.fired.Before(c.start) {
		return Detection{}, false
	}
	c.fired = now
	caller = kind + caller
	return Detection{Rule: r.name, Signal: r.spec.Signal, Caller: caller, Count: c.cur, Window: r.window, Samples: slices.Clone(c.samples),
		Baseline: c.baseline, Response: r.spec.Response, DryRun: r.spec.Mode == resource.ModeDryRun, Allowed: d.allowed(caller), Time: now}, true
}

// addDetails adds the ids of a comma-separated list not yet seen, up to
// maxDetails.
func (c *counter) addDetails(list string) {
	for list != "" && len(c.details) < maxDetails {
		id, rest, _ := strings.Cut(list, ",")
		list = rest
		if id = strings.TrimSpace(id); id != "" && !slices.Contains(c.details, id) {
			c.details = append(c.details, id)
		}
	}
}

// allowed reports whether an AllowList names caller (an address or a
// SPIFFE ID).
func (d *Detector) allowed(caller string) bool {
	a, err := netip.ParseAddr(caller)
	id := ""
	if err != nil {
		id = caller
	}
	for i := range d.allow {
		if d.allow[i].Allows(a, "", id) {
			return true
		}
	}
	return false
}

// AllowedKey reports whether an AllowList names an API key prefix.
func (d *Detector) AllowedKey(prefix string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.allow {
		if d.allow[i].Allows(netip.Addr{}, prefix, "") {
			return true
		}
	}
	return false
}

// evict drops, of a few entries sampled from the table (map order is
// random), the one with the lowest count; entries of a rule that fired
// recently are kept when others can go.
func (d *Detector) evict(r *rule, now time.Time) {
	var victim string
	best := -1.0
	n := 0
	for k, c := range r.callers {
		score := c.estimate(now, r.window, c.cur+len(c.distinct), c.prev+c.prevDist)
		if !c.fired.IsZero() && now.Sub(c.fired) < r.window {
			score += 1e9
		}
		if best < 0 || score < best {
			victim, best = k, score
		}
		if n++; n >= evictSample {
			break
		}
	}
	delete(r.callers, victim)
	d.evicted++
}

// MemoryBound is the documented bound of the detector's state with the
// default rules and capacity: the tables of the default rules, each at
// most DefaultCapacity callers of about 250 bytes.
const MemoryBound = DefaultRuleCount * DefaultCapacity * 250
