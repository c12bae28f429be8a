package waf

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
)

var engines = NewCache()

func engine(t testing.TB, s Settings) *Engine {
	t.Helper()
	e, err := engines.Get(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func get(target string) *http.Request {
	r := httptest.NewRequest("GET", target, nil)
	r.Header.Set("User-Agent", "ward-test/1.0")
	r.Header.Set("Accept", "application/json")
	return r
}

func post(target, ct, body string) (*http.Request, [][]byte) {
	r := httptest.NewRequest("POST", target, strings.NewReader(body))
	r.Header.Set("User-Agent", "ward-test/1.0")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Content-Type", ct)
	return r, [][]byte{[]byte(body)}
}

func TestAttacksBlockedAtParanoia1(t *testing.T) {
	e := engine(t, Settings{Paranoia: 1})
	form := url.Values{"comment": {"<script>alert(document.cookie)</script>"}}.Encode()
	cases := []struct {
		name string
		r    *http.Request
		body [][]byte
		rule int
		loc  string
	}{
		{name: "sqli in query", r: get("/items?id=" + url.QueryEscape("1' OR '1'='1' --")), rule: 942100, loc: "ARGS:id"},
		{name: "union select", r: get("/items?id=" + url.QueryEscape("1 UNION SELECT password FROM users")), loc: "ARGS:id"},
		{name: "xss in query", r: get("/search?q=" + url.QueryEscape("<script>alert(1)</script>")), rule: 941100, loc: "ARGS:q"},
	}
	r, b := post("/comments", "application/x-www-form-urlencoded", form)
	cases = append(cases, struct {
		name string
		r    *http.Request
		body [][]byte
		rule int
		loc  string
	}{"xss in form body", r, b, 941100, "ARGS:comment"})
	r, b = post("/users", "application/json", `{"name":"x","filter":"1' OR 1=1 UNION SELECT * FROM users --"}`)
	cases = append(cases, struct {
		name string
		r    *http.Request
		body [][]byte
		rule int
		loc  string
	}{"sqli in json body", r, b, 0, "ARGS:json.filter"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.Inspect(tc.r, tc.body)
			t.Logf("rules %v score %d locations %v body %v", res.Rules, res.Score, res.Locations, res.Body)
			if !res.Blocked || res.Score < DefaultThreshold {
				t.Fatalf("not blocked: %+v", res)
			}
			if tc.rule != 0 && !containsInt(res.Rules, tc.rule) {
				t.Errorf("rules %v, want %d among them", res.Rules, tc.rule)
			}
			if !containsStr(res.Locations, tc.loc) {
				t.Errorf("locations %v, want %s", res.Locations, tc.loc)
			}
			for _, l := range res.Locations {
				if strings.Contains(l, "script") || strings.Contains(l, "SELECT") {
					t.Errorf("location %q carries the payload", l)
				}
			}
		})
	}
}

// benign is one request of the false-positive corpus in testdata.
type benign struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body"`
}

func benignCorpus(t *testing.T) []benign {
	t.Helper()
	data, err := os.ReadFile("testdata/benign.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out []benign
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var b benign
		if err := json.Unmarshal([]byte(line), &b); err != nil {
			t.Fatalf("benign.jsonl:%d: %v", i+1, err)
		}
		out = append(out, b)
	}
	return out
}

func TestBenignPassesAtParanoia1(t *testing.T) {
	e := engine(t, Settings{Paranoia: 1})
	corpus := benignCorpus(t)
	if len(corpus) < 20 {
		t.Fatalf("corpus of %d requests", len(corpus))
	}
	for _, b := range corpus {
		var r *http.Request
		var body [][]byte
		if b.Body != nil {
			r, body = post(b.Path, "application/json", string(b.Body))
			r.Method = b.Method
		} else {
			r = get(b.Path)
			r.Method = b.Method
		}
		res := e.Inspect(r, body)
		if res.Blocked || res.Matched() {
			t.Errorf("%s %s: rules %v score %d at %v", b.Method, b.Path, res.Rules, res.Score, res.Locations)
		}
		if b.Body != nil && res.Body != BodyInspected {
			t.Errorf("%s %s: body %v, want inspected", b.Method, b.Path, res.Body)
		}
	}
}

func TestExclusionSilencesOneRuleOnOneParameter(t *testing.T) {
	payload := url.QueryEscape("<script>alert(1)</script>")
	base := engine(t, Settings{})
	ex := engine(t, Settings{Exclusions: []Exclusion{{Rule: 941100, Parameter: "bio"}}})
	if base == ex {
		t.Fatal("settings with an exclusion share the engine of settings without")
	}
	for _, tc := range []struct {
		param   string
		e       *Engine
		want941 bool
	}{
		{"bio", base, true},
		{"bio", ex, false}, // excluded: 941100 on bio
		{"name", ex, true}, // another parameter: still matched
	} {
		res := tc.e.Inspect(get("/p?"+tc.param+"="+payload), nil)
		if got := containsInt(res.Rules, 941100); got != tc.want941 {
			t.Errorf("%s (excluded=%v): 941100 matched=%v, rules %v", tc.param, tc.e == ex, got, res.Rules)
		}
		// The other XSS rules still see bio: only one rule was silenced.
		if !containsInt(res.Rules, 941110) {
			t.Errorf("%s: 941110 silenced too: %v", tc.param, res.Rules)
		}
	}
}

func TestSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Settings
		want string
	}{
		{Settings{Exclusions: []Exclusion{{Rule: 999999999, Parameter: "q"}}}, "not a rule of the core rule set"},
		{Settings{Exclusions: []Exclusion{{Rule: 942100, Parameter: "a b"}}}, "exclusion parameter"},
		{Settings{Exclusions: []Exclusion{{Rule: 942100, Parameter: `x"!ARGS`}}}, "exclusion parameter"},
		{Settings{Paranoia: 5}, "paranoia 5"},
		{Settings{Threshold: -1}, "threshold"},
		{Settings{BodyLimit: MaxBodyLimit + 1}, "body bound"},
	} {
		err := tc.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
		if _, err := engines.Get(tc.s); err == nil {
			t.Errorf("%+v: engine built", tc.s)
		}
	}
	if err := (Settings{Paranoia: 2, Exclusions: []Exclusion{{Rule: 942100, Parameter: "json.query"}, {Rule: 920350, Parameter: "REQUEST_HEADERS:Host"}}}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestBodies(t *testing.T) {
	e := engine(t, Settings{BodyLimit: 1 << 10})
	attack := `{"q":"1' OR 1=1 UNION SELECT * FROM users --"}`

	r, body := post("/x", "application/octet-stream", attack)
	// Only the content type itself is judged (920420: not an allowed type).
	if res := e.Inspect(r, body); res.Body != BodySkipped || len(res.Rules) != 1 || res.Rules[0] != 920420 {
		t.Errorf("binary body: %v %v", res.Body, res.Rules)
	}
	r, _ = post("/x", "application/json", attack)
	if res := e.Inspect(r, nil); res.Body != BodyOverBound {
		t.Errorf("unbuffered body: %v", res.Body)
	}
	big := `{"pad":"` + strings.Repeat("a", 2<<10) + `"}`
	r, body = post("/x", "application/json", big)
	if res := e.Inspect(r, body); res.Body != BodyOverBound {
		t.Errorf("body over the bound: %v", res.Body)
	}
	r, body = post("/x", "application/json", `{"q": "unterminated`)
	if res := e.Inspect(r, body); !res.Blocked || !containsInt(res.Rules, ruleBodyUnparsed) {
		t.Errorf("malformed JSON: blocked=%v rules %v", res.Blocked, res.Rules)
	}
	r, body = post("/x", "application/json", attack)
	if res := e.Inspect(r, [][]byte{body[0][:10], body[0][10:]}); !res.Blocked || res.Body != BodyInspected {
		t.Errorf("body in chunks: %+v", res)
	}
}

func TestParanoiaRaisesScore(t *testing.T) {
	// A request that paranoia 1 lets through and paranoia 2 flags.
	r := func() *http.Request { return get("/x?a=" + url.QueryEscape("foo'; --")) }
	p1 := engine(t, Settings{Paranoia: 1}).Inspect(r(), nil)
	p2 := engine(t, Settings{Paranoia: 4}).Inspect(r(), nil)
	if p1.Score >= p2.Score || len(p2.Rules) <= len(p1.Rules) {
		t.Errorf("paranoia 1 %v (%d), paranoia 4 %v (%d)", p1.Rules, p1.Score, p2.Rules, p2.Score)
	}
}

func TestCacheSharesAndReuses(t *testing.T) {
	c := NewCache()
	a, _ := c.Get(Settings{Paranoia: 1})
	b, _ := c.Get(Settings{}) // defaults: the same settings
	if a != b || c.Len() != 1 {
		t.Fatalf("equal settings built %d engines", c.Len())
	}
	n := c.Next()
	a2, _ := n.Get(Settings{Paranoia: 1})
	if a2 != a {
		t.Error("reload rebuilt an unchanged engine")
	}
	if n.Len() != 1 {
		t.Errorf("next cache holds %d engines", n.Len())
	}
}

func BenchmarkInspect(b *testing.B) {
	e := engine(b, Settings{})
	body := `{"items":[` + strings.Repeat(`{"sku":"sku-1234","qty":2,"note":"leave at the door"},`, 17) + `{"sku":"x","qty":1}],"ok":true}`
	for len(body) < 1024 {
		body += " "
	}
	b.Run("GET", func(b *testing.B) {
		b.ReportAllocs()
		r := get("/orders?status=shipped&page=2")
		for b.Loop() {
			if res := e.Inspect(r, nil); res.Blocked {
				b.Fatal(res.Rules)
			}
		}
	})
	b.Run("POST-1KB-JSON", func(b *testing.B) {
		b.ReportAllocs()
		r, chunks := post("/orders", "application/json", body)
		for b.Loop() {
			if res := e.Inspect(r, chunks); res.Blocked {
				b.Fatal(res.Rules)
			}
		}
	})
}

func TestGuardVerdicts(t *testing.T) {
	e := engine(t, Settings{BodyLimit: 1 << 10})
	sqli := "/items?id=" + url.QueryEscape("1' OR '1'='1' --")
	big := `{"pad":"` + strings.Repeat("a", 2<<10) + `"}`
	for _, tc := range []struct {
		name    string
		g       Guard
		r       func() (*http.Request, [][]byte)
		verdict string
		refuse  bool
	}{
		{"enforce blocks", Guard{e, Enforce, Refuse}, func() (*http.Request, [][]byte) { return get(sqli), nil }, VerdictBlocked, true},
		{"dry-run would block", Guard{e, DryRun, Refuse}, func() (*http.Request, [][]byte) { return get(sqli), nil }, VerdictWouldBlock, false},
		{"benign passes", Guard{e, Enforce, Refuse}, func() (*http.Request, [][]byte) { return get("/items?q=lamp"), nil }, "", false},
		{"over the bound refused", Guard{e, Enforce, Refuse}, func() (*http.Request, [][]byte) { return post("/x", "application/json", big) }, VerdictBlocked, true},
		{"over the bound passed", Guard{e, Enforce, Pass}, func() (*http.Request, [][]byte) { return post("/x", "application/json", big) }, VerdictUninspected, false},
		{"over the bound in dry-run", Guard{e, DryRun, Refuse}, func() (*http.Request, [][]byte) { return post("/x", "application/json", big) }, VerdictWouldBlock, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, body := tc.r()
			if tc.g.WantsBody(r) && len(body) > 0 && int64(len(body[0])) > e.s.BodyLimit {
				t.Error("WantsBody for a declared length over the bound")
			}
			f := tc.g.Check(r, body)
			if f.Verdict != tc.verdict || f.Refuse != tc.refuse {
				t.Fatalf("verdict %q refuse %v, want %q %v (%+v)", f.Verdict, f.Refuse, tc.verdict, tc.refuse, f)
			}
			if tc.verdict != "" && f.Detail == "" {
				t.Error("no detail for the record")
			}
			if strings.Contains(f.Detail+f.Location, "OR '1'") {
				t.Errorf("finding carries the payload: %+v", f)
			}
		})
	}
	if g, err := NewGuard(NewCache(), Off, Refuse, Settings{}); g != nil || err != nil {
		t.Errorf("off: guard %v, %v", g, err)
	}
}

func TestMultipartBody(t *testing.T) {
	e := engine(t, Settings{})
	body := "--b0undary\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nMy holiday photos\r\n" +
		"--b0undary\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\n<script>alert(document.cookie)</script>\r\n--b0undary--\r\n"
	r, chunks := post("/upload", "multipart/form-data; boundary=b0undary", body)
	res := e.Inspect(r, chunks)
	if !res.Blocked || res.Body != BodyInspected || !containsStr(res.Locations, "ARGS:caption") {
		t.Errorf("xss in a multipart field: %+v", res)
	}
	benign := strings.Replace(body, "<script>alert(document.cookie)</script>", "Sunset at the beach — it's lovely!", 1)
	r, chunks = post("/upload", "multipart/form-data; boundary=b0undary", benign)
	if res := e.Inspect(r, chunks); res.Blocked || res.Matched() {
		t.Errorf("benign multipart: %+v", res)
	}
}

func TestLocationsWithholdPayloadNames(t *testing.T) {
	e := engine(t, Settings{})
	res := e.Inspect(get("/x?"+url.QueryEscape("<script>alert(1)</script>")+"=1"), nil)
	if !res.Blocked {
		t.Fatalf("xss in an argument name: %+v", res)
	}
	for _, l := range res.Locations {
		if strings.Contains(l, "script") || strings.Contains(l, "alert") {
			t.Errorf("location %q carries the payload", l)
		}
	}
	if !containsStr(res.Locations, "ARGS_NAMES:(name withheld)") {
		t.Errorf("locations %v", res.Locations)
	}
}
