package waf

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzInspect feeds the engine requests whose query, content type and body
// come from the fuzzer: inspection never panics, a blocked result has a
// score at the threshold (or an unparsed body), and no location carries
// a value.
func FuzzInspect(f *testing.F) {
	for _, s := range [][3]string{
		{"q=1' OR '1'='1", "application/json", `{"a":"<script>alert(1)</script>"}`},
		{"id=1", "application/x-www-form-urlencoded", "a=1&b=%27%20OR%201=1"},
		{"", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--x--\r\n"},
		{"a[]=1&a[]=2", "application/json", `{"deep":[[[[[{"x":null}]]]]]}`},
		{"%zz", "text/xml", "<a><b>1</b></a>"},
		{"", "application/json", `{"a": "b`},
		{"x=\x00", "", "\xff\xfe"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	e := engine(f, Settings{})
	f.Fuzz(func(t *testing.T, query, ct, body string) {
		r := httptest.NewRequest("POST", "/f", strings.NewReader(body))
		r.URL.RawQuery = query
		r.RequestURI = "/f?" + query
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		var chunks [][]byte
		if body != "" {
			chunks = [][]byte{[]byte(body)}
		} else {
			r.Body, r.ContentLength = http.NoBody, 0
		}
		res := e.Inspect(r, chunks)
		if res.Blocked && res.Score < e.s.Threshold && !containsInt(res.Rules, ruleBodyUnparsed) && !containsInt(res.Rules, ruleMultipartStrict) {
			t.Fatalf("blocked at score %d: %v", res.Score, res.Rules)
		}
		if len(res.Locations) > maxLocations {
			t.Fatalf("%d locations", len(res.Locations))
		}
		for _, l := range res.Locations {
			if v, err := url.QueryUnescape(query); err == nil && len(v) > 8 && strings.Contains(l, v) {
				t.Fatalf("location %q carries the query value", l)
			}
		}
	})
}
