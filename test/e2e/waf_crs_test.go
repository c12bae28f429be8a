package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The CRS regression corpus, in go-ftw's format: a file per rule, tests
// of one or more stages, each an input request and the expected output.
type ftwFile struct {
	RuleID int       `yaml:"rule_id"`
	Tests  []ftwTest `yaml:"tests"`
}

type ftwTest struct {
	TestID int        `yaml:"test_id"`
	Desc   string     `yaml:"desc"`
	Stages []ftwStage `yaml:"stages"`
}

type ftwStage struct {
	Input  ftwInput  `yaml:"input"`
	Output ftwOutput `yaml:"output"`
}

type ftwInput struct {
	Method              *string   `yaml:"method"`
	URI                 *string   `yaml:"uri"`
	Version             *string   `yaml:"version"`
	Headers             yaml.Node `yaml:"headers"`
	Data                *string   `yaml:"data"`
	EncodedRequest      string    `yaml:"encoded_request"`
	AutocompleteHeaders *bool     `yaml:"autocomplete_headers"`
}

type ftwOutput struct {
	Status      any      `yaml:"status"`
	ExpectError bool     `yaml:"expect_error"`
	Log         ftwLog   `yaml:"log"`
	LogContains string   `yaml:"log_contains"`
	NoLog       string   `yaml:"no_log_contains"`
	Response    string   `yaml:"response_contains"`
	ExpectIDs   []int    `yaml:"expect_ids"`
	Extra       []string `yaml:"-"`
}

type ftwLog struct {
	ExpectIDs    []int  `yaml:"expect_ids"`
	NoExpectIDs  []int  `yaml:"no_expect_ids"`
	MatchRegex   string `yaml:"match_regex"`
	NoMatchRegex string `yaml:"no_match_regex"`
}

// crsCase is one stage of one test, ready to send.
type crsCase struct {
	name     string // 942100-1
	rule     int
	request  []byte
	expect   []int
	noExpect []int
	status   []int
	skip     string // why no proxy can carry it, or why it cannot be judged here
}

var ruleIDRe = regexp.MustCompile(`\b(9\d{5})\b`)

// loadCRSCorpus reads every test of the coraza-coreruleset module's tests/.
func loadCRSCorpus(t *testing.T) []crsCase {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/corazawaf/coraza-coreruleset/v4").Output()
	if err != nil {
		t.Fatalf("locate the coraza-coreruleset module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "tests")
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.yaml"))
	if len(files) < 200 {
		t.Fatalf("%d test files under %s", len(files), dir)
	}
	var cases []crsCase
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var ff ftwFile
		if err := yaml.Unmarshal(raw, &ff); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		rule := ff.RuleID
		if rule == 0 {
			rule, _ = strconv.Atoi(strings.TrimSuffix(filepath.Base(f), ".yaml"))
		}
		for _, tc := range ff.Tests {
			for i, st := range tc.Stages {
				name := fmt.Sprintf("%d-%d", rule, tc.TestID)
				if len(tc.Stages) > 1 {
					name += fmt.Sprintf("/%d", i+1)
				}
				cases = append(cases, buildCase(name, rule, st))
			}
		}
	}
	return cases
}

func buildCase(name string, rule int, st ftwStage) crsCase {
	c := crsCase{name: name, rule: rule}
	out := st.Output
	c.expect = append(append(c.expect, out.Log.ExpectIDs...), out.ExpectIDs...)
	c.noExpect = out.Log.NoExpectIDs
	for _, m := range ruleIDRe.FindAllString(out.LogContains+" "+out.Log.MatchRegex, -1) {
		n, _ := strconv.Atoi(m)
		c.expect = append(c.expect, n)
	}
	for _, m := range ruleIDRe.FindAllString(out.NoLog+" "+out.Log.NoMatchRegex, -1) {
		n, _ := strconv.Atoi(m)
		c.noExpect = append(c.noExpect, n)
	}
	switch s := out.Status.(type) {
	case int:
		c.status = []int{s}
	case []any:
		for _, v := range s {
			if n, ok := v.(int); ok {
				c.status = append(c.status, n)
			}
		}
	}
	switch {
	case out.ExpectError:
		c.skip = "expects the server to fail the connection: a proxy answers instead"
	case len(c.expect) == 0 && len(c.noExpect) == 0 && len(c.status) == 0:
		c.skip = "expects only a response body or a log pattern without a rule id"
	}
	in := st.Input
	if in.EncodedRequest != "" {
		b, err := base64.StdEncoding.DecodeString(in.EncodedRequest)
		if err != nil {
			c.skip = "encoded_request is not base64"
		}
		c.request = b
		return c
	}
	method, uri, version := "GET", "/", "HTTP/1.1"
	if in.Method != nil {
		method = *in.Method
	}
	if in.URI != nil {
		uri = *in.URI
	}
	if in.Version != nil {
		version = *in.Version
	}
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte(' ')
	b.WriteString(uri)
	if version != "" {
		b.WriteByte(' ')
		b.WriteString(version)
	}
	b.WriteString("\r\n")
	haveLen, haveHost, haveConn := false, false, false
	h := in.Headers
	for i := 0; i+1 < len(h.Content); i += 2 {
		k, v := h.Content[i].Value, h.Content[i+1].Value
		switch strings.ToLower(k) {
		case "content-length", "transfer-encoding":
			haveLen = true
		case "host":
			haveHost = true
		case "connection":
			haveConn = true
		}
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	data := ""
	if in.Data != nil {
		data = *in.Data
	}
	auto := in.AutocompleteHeaders == nil || *in.AutocompleteHeaders
	if auto && !haveLen && data != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(data))
	}
	if !haveHost && version == "HTTP/1.1" && auto {
		b.WriteString("Host: localhost\r\n")
	}
	if !haveConn {
		b.WriteString("Connection: close\r\n") // every case is one request on its own connection
	}
	b.WriteString("\r\n")
	b.WriteString(data)
	c.request = []byte(b.String())
	return c
}

// TestCRSRegressionCorpus replays the Core Rule Set's own regression tests
// through a running `ward gateway` (paranoia 4, as the CRS runs them, in
// enforce) and compares each case's expected rule ids with the rule ids in
// the gateway's request record. Cases that no reverse proxy can carry, and
// requests Ward's hygiene refuses before any inspection (invariant 4), are
// listed and left out of the denominator. The pass rate must be at least
// 95%.
func TestCRSRegressionCorpus(t *testing.T) {
	cases := loadCRSCorpus(t)
	if only := os.Getenv("WARD_CRS_CASES"); only != "" { // a regexp of case names, to look into some
		re := regexp.MustCompile(only)
		cases = slices.DeleteFunc(cases, func(c crsCase) bool { return !re.MatchString(c.name) })
	}
	w := newWAFSetup(t, "{mode: enforce, paranoia: 4, body: 1MiB, overBound: pass}", nil)
	waitGateway(t, w)

	start := time.Now()
	results := make([]rawExchange, len(cases))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if cases[i].skip == "" {
					results[i] = w.sendRaw(cases[i].request)
				}
			}
		}()
	}
	for i := range cases {
		next <- i
	}
	close(next)
	wg.Wait()
	sent := 0
	for i := range cases {
		if results[i].requestID != "" {
			sent++
		}
	}
	recs := w.records(sent)
	elapsed := time.Since(start)

	var pass, fail, respFail int
	excluded := map[string][]string{}
	var failures []string
	for i, c := range cases {
		res := results[i]
		why := c.skip
		switch {
		case why != "":
		case res.err != nil:
			why = "no response from the gateway: " + errClass(res.err)
			if os.Getenv("WARD_CRS_CASES") != "" {
				t.Logf("%s: %v\n%q", c.name, res.err, c.request)
			}
		case res.reason != "" && res.reason != "waf":
			why = "refused by Ward's hygiene before inspection (" + res.reason + ")"
		case res.status >= 400 && res.reason == "":
			why = fmt.Sprintf("answered %d by the HTTP server before the pipeline", res.status)
		}
		if why != "" {
			excluded[why] = append(excluded[why], c.name)
			continue
		}
		rec, ok := recs[res.requestID]
		if !ok {
			fail++
			failures = append(failures, c.name+": no request record")
			continue
		}
		got := map[int]bool{}
		for _, s := range strings.Split(rec.Fields["waf_rules"], ",") {
			if n, err := strconv.Atoi(s); err == nil {
				got[n] = true
			}
		}
		var problems []string
		for _, id := range c.expect {
			if !got[id] {
				problems = append(problems, fmt.Sprintf("expected %d", id))
			}
		}
		for _, id := range c.noExpect {
			if got[id] {
				problems = append(problems, fmt.Sprintf("unexpected %d", id))
			}
		}
		if len(c.expect) == 0 && len(c.noExpect) == 0 && len(c.status) > 0 && !containsInt(c.status, res.status) {
			problems = append(problems, fmt.Sprintf("status %d, want %v", res.status, c.status))
		}
		if len(problems) == 0 {
			pass++
			continue
		}
		fail++
		note := ""
		if c.rule >= 950000 && c.rule < 960000 || c.rule >= 980000 {
			note = " [a response rule: Ward does not inspect responses]"
			respFail++
		}
		failures = append(failures, fmt.Sprintf("%s: %s (matched %s)%s", c.name, strings.Join(problems, ", "), rec.Fields["waf_rules"], note))
	}
	total := pass + fail
	rate := 100 * float64(pass) / float64(max(total, 1))
	var ex []string
	nEx := 0
	for why, names := range excluded {
		sort.Strings(names)
		nEx += len(names)
		ex = append(ex, fmt.Sprintf("  %d %s: %s", len(names), why, strings.Join(names, " ")))
	}
	sort.Strings(ex)
	sort.Strings(failures)
	t.Logf("CRS regression corpus: %d cases, %d excluded, %d judged: %d pass, %d fail: pass rate %.2f%% (%s)",
		len(cases), nEx, total, pass, fail, rate, elapsed.Round(time.Second))
	fmt.Printf("CRS regression corpus pass rate: %.2f%% (%d of %d judged cases; %d excluded)\n", rate, pass, total, nEx)
	t.Logf("excluded:\n%s", strings.Join(ex, "\n"))
	t.Logf("failing (%d, of which %d test response rules):\n  %s", fail, respFail, strings.Join(failures, "\n  "))
	if total < 3000 {
		t.Errorf("only %d cases judged", total)
	}
	if rate < 95 {
		t.Errorf("pass rate %.2f%% below 95%%", rate)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// errClass is a short, stable description of a connection error.
func errClass(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "EOF"):
		return "connection closed"
	case strings.Contains(s, "reset"):
		return "connection reset"
	case strings.Contains(s, "timeout"):
		return "timeout"
	case strings.Contains(s, "malformed HTTP"):
		return "malformed response"
	}
	return s
}

// waitGateway waits until the gateway forwards a plain request.
func waitGateway(t *testing.T, w *wafSetup) {
	t.Helper()
	c := w.client()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := c.Get(w.url("/ready"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not forwarding: %v", err)
		}
	}
}
