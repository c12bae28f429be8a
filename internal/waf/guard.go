package waf

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/wardsec/ward/internal/audit"
)

// Guard is the compiled inspection of one Route or Service: a shared
// engine and what to do with its results. A nil *Guard is off.
type Guard struct {
	Engine *Engine
	Mode   Mode // DryRun or Enforce
	Over   OverBound
}

// NewGuard returns the guard of mode over an engine from c, or nil when
// mode is Off: an off route costs its stage one comparison.
func NewGuard(c *Cache, mode Mode, over OverBound, s Settings) (*Guard, error) {
	if mode == Off {
		return nil, nil
	}
	e, err := c.Get(s)
	if err != nil {
		return nil, err
	}
	return &Guard{Engine: e, Mode: mode, Over: over}, nil
}

// Verdicts of a Finding, as records carry them.
const (
	VerdictBlocked     = "blocked"            // enforce: refused with 403
	VerdictWouldBlock  = "would_block"        // dry-run: forwarded, would have been refused
	VerdictMatched     = "matched"            // rules matched under the threshold: forwarded
	VerdictUninspected = "body_not_inspected" // body over the bound, passed by setting
)

// WantsBody reports whether r's body must be buffered for inspection: it
// has one, the rules read its content type, and its declared length is
// within the bound (a longer one is over the bound without reading it).
func (g *Guard) WantsBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return false
	}
	return readsBody(r.Header.Get("Content-Type")) && r.ContentLength <= g.Engine.s.BodyLimit
}

// Finding is a guard's decision on one request, in the words of its
// record. The zero Finding: nothing matched.
type Finding struct {
	Verdict  string
	Rules    string // comma-separated ids
	Score    int64
	Location string // comma-separated variable:key
	Refuse   bool   // the role refuses the request (enforce)
	Detail   string // for the operator's record, never for the client
}

// Check inspects r (see Engine.Inspect) and decides.
func (g *Guard) Check(r *http.Request, body [][]byte) Finding {
	res := g.Engine.Inspect(r, body)
	over := res.Body == BodyOverBound
	block := res.Blocked || (over && g.Over == Refuse)
	if !block && !res.Matched() && !over {
		return Finding{}
	}
	f := Finding{Score: int64(res.Score), Rules: joinInts(res.Rules), Location: strings.Join(res.Locations, ",")}
	switch {
	case block && g.Mode == Enforce:
		f.Verdict, f.Refuse = VerdictBlocked, true
	case block:
		f.Verdict = VerdictWouldBlock
	case over:
		f.Verdict = VerdictUninspected
	default:
		f.Verdict = VerdictMatched
	}
	switch {
	case res.Blocked:
		f.Detail = "waf: anomaly score " + strconv.Itoa(res.Score) + " reached threshold " + strconv.Itoa(g.Engine.s.Threshold) + ": rules " + f.Rules + " at " + f.Location
	case over:
		f.Detail = "waf: body over the inspection bound of " + strconv.FormatInt(g.Engine.s.BodyLimit, 10) + " bytes (overBound: " + g.Over.String() + ")"
	default:
		f.Detail = "waf: rules " + f.Rules + " under the threshold"
	}
	return f
}

// Fill copies f into a request record.
func (f *Finding) Fill(h *audit.HTTP) {
	h.WAF, h.WAFRules, h.WAFScore, h.WAFLocation = f.Verdict, f.Rules, f.Score, f.Location
}

func joinInts(ids []int) string {
	var b []byte
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(id), 10)
	}
	return string(b)
}
