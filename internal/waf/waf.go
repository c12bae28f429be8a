// Package waf is Ward's input inspection: the OWASP Core Rule Set run by
// the Coraza engine over a request's headers, URI, arguments and (within a
// bound) body.
//
// An Engine holds the compiled rules of one Settings value; compiling the
// CRS takes a fraction of a second and a few megabytes, so engines are
// built when a role compiles its snapshot (never per request) and shared
// through a Cache by every route or service with equal settings. A request
// is inspected with Engine.Inspect, which answers a Result: the matched
// rule ids, the inbound anomaly score, the matched locations (variable and
// key, never the value) and whether the score reaches the threshold.
package waf

import (
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
)

// Mode says what a role does with a Result.
type Mode uint8

// Modes.
const (
	// Off inspects nothing: the stage costs one comparison.
	Off Mode = iota
	// DryRun inspects and records what would have been blocked, and lets
	// the request through.
	DryRun
	// Enforce refuses a request whose score reaches the threshold.
	Enforce
)

func (m Mode) String() string {
	switch m {
	case DryRun:
		return "dry-run"
	case Enforce:
		return "enforce"
	}
	return "off"
}

// ParseMode reads "off", "dry-run" or "enforce".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "off", "":
		return Off, nil
	case "dry-run":
		return DryRun, nil
	case "enforce":
		return Enforce, nil
	}
	return Off, fmt.Errorf("unknown waf mode %q: want off, dry-run or enforce", s)
}

// OverBound says what happens to a request whose body is larger than the
// inspection bound (or is streamed, and so cannot be inspected before it
// is forwarded).
type OverBound uint8

// What to do with a body over the bound.
const (
	// Refuse answers 403 with the waf reason: nothing uninspected passes.
	Refuse OverBound = iota
	// Pass inspects the headers and URI only, forwards the request and
	// records that its body was not inspected.
	Pass
)

func (o OverBound) String() string {
	if o == Pass {
		return "pass"
	}
	return "refuse"
}

// Defaults and bounds of Settings.
const (
	DefaultParanoia  = 1
	DefaultThreshold = 5 // the CRS default: one critical match
	DefaultBodyLimit = 128 << 10
	MaxBodyLimit     = 16 << 20
	MaxThreshold     = 10000
)

// Exclusion silences one rule on one parameter: Parameter is an argument
// name as the rules see it — a query or form field ("q"), a JSON field
// with its path ("json.user.bio"), or a header as "REQUEST_HEADERS:name"
// or a cookie as "REQUEST_COOKIES:name".
type Exclusion struct {
	Rule      int
	Parameter string
}

// target is the rule variable an exclusion removes.
func (e Exclusion) target() string {
	if strings.HasPrefix(e.Parameter, "REQUEST_HEADERS:") || strings.HasPrefix(e.Parameter, "REQUEST_COOKIES:") {
		return e.Parameter
	}
	return "ARGS:" + e.Parameter
}

// Settings is what an engine is compiled from. Equal settings share one
// engine.
type Settings struct {
	Paranoia   int   // 1-4
	Threshold  int   // inbound anomaly score at which a request is blocked
	BodyLimit  int64 // bytes of body inspected at most
	Exclusions []Exclusion
}

// withDefaults fills in zero fields and sorts the exclusions.
func (s Settings) withDefaults() Settings {
	if s.Paranoia == 0 {
		s.Paranoia = DefaultParanoia
	}
	if s.Threshold == 0 {
		s.Threshold = DefaultThreshold
	}
	if s.BodyLimit == 0 {
		s.BodyLimit = DefaultBodyLimit
	}
	ex := append([]Exclusion(nil), s.Exclusions...)
	sort.Slice(ex, func(i, j int) bool {
		if ex[i].Rule != ex[j].Rule {
			return ex[i].Rule < ex[j].Rule
		}
		return ex[i].Parameter < ex[j].Parameter
	})
	s.Exclusions = ex
	return s
}

// Validate checks s: paranoia 1-4, a positive threshold, a body bound in
// range, and exclusions that name a rule of the rule set and a parameter
// without spaces or quotes.
func (s Settings) Validate() error {
	s = s.withDefaults()
	if s.Paranoia < 1 || s.Paranoia > 4 {
		return fmt.Errorf("paranoia %d out of range 1-4", s.Paranoia)
	}
	if s.Threshold < 1 || s.Threshold > MaxThreshold {
		return fmt.Errorf("threshold %d out of range 1-%d", s.Threshold, MaxThreshold)
	}
	if s.BodyLimit < 1 || s.BodyLimit > MaxBodyLimit {
		return fmt.Errorf("body bound %d out of range 1B-16MiB", s.BodyLimit)
	}
	for _, e := range s.Exclusions {
		if err := e.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks that e names a rule of the rule set and a well-formed
// parameter.
func (e Exclusion) Validate() error {
	if !KnownRule(e.Rule) {
		return fmt.Errorf("exclusion names rule %d, which is not a rule of the core rule set", e.Rule)
	}
	if !validParam.MatchString(e.Parameter) {
		return fmt.Errorf("exclusion parameter %q: want a name of letters, digits and . _ - [ ] (optionally REQUEST_HEADERS: or REQUEST_COOKIES: before it)", e.Parameter)
	}
	return nil
}

var validParam = regexp.MustCompile(`^(?:REQUEST_HEADERS:|REQUEST_COOKIES:)?[A-Za-z0-9._\-\[\]]{1,128}$`)

// key is the identity of compiled settings (defaults applied).
func (s Settings) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "p%d t%d b%d", s.Paranoia, s.Threshold, s.BodyLimit)
	for _, e := range s.Exclusions {
		fmt.Fprintf(&b, " %d=%s", e.Rule, e.Parameter)
	}
	return b.String()
}

// directives is the rule configuration of s: Coraza's recommended base in
// detection-only mode (Ward decides from the score), no response or audit
// processing, the CRS with s's paranoia and threshold, then the exclusions.
func (s Settings) directives() string {
	var b strings.Builder
	b.WriteString("Include @coraza.conf-recommended\n")
	b.WriteString("SecRuleEngine DetectionOnly\n")
	b.WriteString("SecRequestBodyAccess On\n")
	fmt.Fprintf(&b, "SecRequestBodyLimit %d\n", s.BodyLimit)
	fmt.Fprintf(&b, "SecRequestBodyInMemoryLimit %d\n", s.BodyLimit)
	b.WriteString("SecRequestBodyLimitAction ProcessPartial\n")
	b.WriteString("SecResponseBodyAccess Off\n")
	b.WriteString("SecAuditEngine Off\n")
	b.WriteString("Include @crs-setup.conf.example\n")
	fmt.Fprintf(&b, `SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=%d"`+"\n", s.Paranoia)
	fmt.Fprintf(&b, `SecAction "id:900110,phase:1,pass,t:none,nolog,setvar:tx.inbound_anomaly_score_threshold=%d,setvar:tx.outbound_anomaly_score_threshold=4"`+"\n", s.Threshold)
	// An API gateway's routes use the REST methods; which ones a route
	// takes is for its policy to say.
	b.WriteString(`SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"` + "\n")
	b.WriteString("Include @owasp_crs/REQUEST-*.conf\n")
	for _, e := range s.Exclusions {
		fmt.Fprintf(&b, "SecRuleUpdateTargetById %d \"!%s\"\n", e.Rule, e.target())
	}
	return b.String()
}

// Engine is the compiled rule set of one Settings value. It is safe for
// concurrent use.
type Engine struct {
	waf coraza.WAF
	s   Settings
}

// New compiles the rule set for s.
func New(s Settings) (*Engine, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.withDefaults()
	w, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(s.directives()))
	if err != nil {
		return nil, fmt.Errorf("compile waf rules: %w", err)
	}
	return &Engine{waf: w, s: s}, nil
}

// Settings returns the settings e was compiled from, defaults applied.
func (e *Engine) Settings() Settings { return e.s }

// Cache holds engines by settings, so that routes with equal settings share
// one and a reload reuses what did not change. A snapshot builds its engines
// through the previous snapshot's Cache with Next.
type Cache struct {
	mu   sync.Mutex
	m    map[string]*Engine
	prev map[string]*Engine // the previous snapshot's, read only
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{m: map[string]*Engine{}} }

// Get returns the engine of s, compiling it the first time.
func (c *Cache) Get(s Settings) (*Engine, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	k := s.withDefaults().key()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		return e, nil
	}
	if e, ok := c.prev[k]; ok {
		c.m[k] = e
		return e, nil
	}
	e, err := New(s)
	if err != nil {
		return nil, err
	}
	c.m[k] = e
	return e, nil
}

// Next returns a cache for the next snapshot: it starts empty but takes
// engines from c (which may be nil) when the settings are equal, so that
// engines no longer used are dropped with the old snapshot.
func (c *Cache) Next() *Cache {
	n := NewCache()
	if c != nil {
		c.mu.Lock()
		n.prev = c.m
		c.mu.Unlock()
	}
	return n
}

// Len is the number of distinct engines in the cache.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

var (
	knownOnce sync.Once
	known     map[int]bool
)

// KnownRule reports whether id is a rule of the request rule set Ward
// loads (the CRS request rules and Coraza's base rules).
func KnownRule(id int) bool {
	knownOnce.Do(func() {
		known = map[int]bool{}
		re := regexp.MustCompile(`id:'?(\d+)`)
		files, _ := fs.Glob(coreruleset.FS, "@owasp_crs/REQUEST-*.conf")
		files = append(files, "@coraza.conf-recommended")
		for _, f := range files {
			data, err := fs.ReadFile(coreruleset.FS, f)
			if err != nil {
				continue
			}
			for _, m := range re.FindAllSubmatch(data, -1) {
				if n, err := strconv.Atoi(string(m[1])); err == nil {
					known[n] = true
				}
			}
		}
	})
	return known[id]
}
