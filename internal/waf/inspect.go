package waf

import (
	"mime"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"
)

// BodyState says what Inspect did with the request body.
type BodyState uint8

// Body states.
const (
	// BodyNone: the request has no body.
	BodyNone BodyState = iota
	// BodyInspected: the whole body went through the rules.
	BodyInspected
	// BodySkipped: the body's content type is not one the rules read
	// (binary uploads, images): only headers and URI were inspected.
	BodySkipped
	// BodyOverBound: the body is larger than the bound, or was not
	// buffered; only headers and URI were inspected, and the role applies
	// its over-bound setting.
	BodyOverBound
)

func (b BodyState) String() string {
	switch b {
	case BodyInspected:
		return "inspected"
	case BodySkipped:
		return "skipped"
	case BodyOverBound:
		return "over_bound"
	}
	return "none"
}

// maxLocations bounds the locations a Result keeps.
const maxLocations = 8

// Result is what the rules found in one request. It never holds matched
// values: Locations name where (ARGS:q, REQUEST_HEADERS:User-Agent), not
// what.
type Result struct {
	Rules     []int    // ids of the rules that matched, in order, once each
	Score     int      // the inbound anomaly score
	Locations []string // variable:key of the matches, at most eight
	Blocked   bool     // Score reached the threshold
	Body      BodyState
}

// Matched reports whether any scoring rule matched.
func (r *Result) Matched() bool { return len(r.Rules) > 0 }

// Inspect runs the rules over r: its connection, URI, headers and, when
// body holds it whole and its content type is one the rules read, its
// body. body is the buffered body in chunks (nil when there is none or it
// was not buffered); Inspect does not read r.Body.
func (e *Engine) Inspect(r *http.Request, body [][]byte) Result {
	var res Result
	tx := e.waf.NewTransaction()
	defer func() { _ = tx.Close() }()

	client, cport := splitAddr(r.RemoteAddr)
	tx.ProcessConnection(client, cport, "", 0)
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	tx.ProcessURI(uri, r.Method, r.Proto)
	tx.SetServerName(hostOnly(r.Host))
	tx.AddRequestHeader("Host", r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			tx.AddRequestHeader(k, v)
		}
	}
	if r.ContentLength > 0 && r.Header.Get("Content-Length") == "" {
		tx.AddRequestHeader("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	tx.ProcessRequestHeaders()

	res.Body = e.feedBody(tx, r, body)
	_, _ = tx.ProcessRequestBody() // phase 2 runs even without a body: most argument rules live there

	e.collect(tx, &res)
	return res
}

// feedBody writes the body into tx when the rules need it.
func (e *Engine) feedBody(tx types.Transaction, r *http.Request, body [][]byte) BodyState {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return BodyNone
	}
	if !readsBody(r.Header.Get("Content-Type")) {
		return BodySkipped
	}
	var n int64
	for _, c := range body {
		n += int64(len(c))
	}
	if body == nil || n > e.s.BodyLimit || (r.ContentLength > 0 && n != r.ContentLength) {
		return BodyOverBound
	}
	for _, c := range body {
		if _, _, err := tx.WriteRequestBody(c); err != nil {
			return BodyOverBound
		}
	}
	return BodyInspected
}

// readsBody reports whether the rules read a body of content type ct: no
// type (parsed as a form, as the CRS does), forms, multipart, JSON, XML
// and text. Other types (binary, images, archives) get no body work.
func readsBody(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return true // a malformed type is for the rules to judge
	}
	switch {
	case mt == "application/x-www-form-urlencoded", mt == "multipart/form-data",
		mt == "application/json", mt == "application/xml",
		strings.HasPrefix(mt, "text/"),
		strings.HasPrefix(mt, "application/") && (strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml")):
		return true
	}
	return false
}

// collect fills res from the transaction's matches and score.
func (e *Engine) collect(tx types.Transaction, res *Result) {
	unparsed := false
	for _, m := range tx.MatchedRules() {
		if l, ok := m.(interface{ Log() bool }); ok && !l.Log() {
			continue // flow control and set-up rules (nolog)
		}
		id := m.Rule().ID()
		if !scoring(id) {
			continue
		}
		if id == ruleBodyUnparsed || id == ruleMultipartStrict {
			unparsed = true
		}
		if !containsInt(res.Rules, id) {
			res.Rules = append(res.Rules, id)
		}
		for _, d := range m.MatchedDatas() {
			if len(res.Locations) == maxLocations {
				break
			}
			loc := d.Variable().Name()
			if loc == "TX" || strings.HasPrefix(loc, "MATCHED_VAR") {
				continue // the rule set's own variables, and chains' restatements
			}
			if k := d.Key(); k != "" {
				loc += ":" + safeKey(k)
			}
			if !containsStr(res.Locations, loc) {
				res.Locations = append(res.Locations, loc)
			}
		}
	}
	if st, ok := tx.(plugintypes.TransactionState); ok {
		if v := st.Variables().TX().Get("blocking_inbound_anomaly_score"); len(v) > 0 {
			res.Score, _ = strconv.Atoi(v[0])
		}
	}
	// A body the parser refused was not inspected: it blocks whatever
	// its score, or a malformed body would carry anything past the rules.
	res.Blocked = res.Score >= e.s.Threshold || unparsed
}

// Coraza's base rules for bodies its parsers refuse.
const (
	ruleBodyUnparsed    = 200002
	ruleMultipartStrict = 200003
)

// scoring reports whether rule id detects something, as opposed to the
// rule set's initialisation, flow control and score evaluation.
func scoring(id int) bool {
	switch {
	case id >= 900000 && id < 911000: // setup, initialisation, common exceptions
		return false
	case id >= 949000 && id < 950000: // blocking evaluation
		return false
	case id >= 959000: // exceptions after, outbound evaluation, correlation
		return false
	}
	return true
}

// safeKey is a matched variable's key as a record may show it: argument,
// header and cookie names are chosen by the client, so a name that is not
// a plain identifier (the payload itself can be a name) is withheld.
func safeKey(k string) string {
	if plainKey.MatchString(k) {
		return k
	}
	return "(name withheld)"
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9._\-\[\]]{1,64}$`)

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func containsStr(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func splitAddr(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}
