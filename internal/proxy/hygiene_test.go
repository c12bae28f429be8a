package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/wardsec/ward/internal/proxy/proxytest"
)

func TestWardOwnedEverySpelling(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Ward-User": true, "x-ward-user": true, "X-WARD-PEER-ID": true, "x_ward_user": true, "X_Ward_Identity": true,
		"x-ward_user": true, "X_ward-Scopes": true, "x-WaRd-": true,
		"X-Wardrobe": false, "X-Ward": false, "X-Forwarded-For": false, "XX-Ward-User": false, "": false, "x.ward-user": false,
	} {
		if WardOwned(name) != want || WardOwned([]byte(name)) != want {
			t.Errorf("WardOwned(%q) = %v, want %v", name, !want, want)
		}
	}
	h := http.Header{"X-Ward-User": {"a"}, "X_ward_app": {"b"}, "X-Wardrobe": {"c"}, "Accept": {"d"}}
	StripWard(h)
	if len(h) != 2 || h.Get("X-Wardrobe") != "c" || h.Get("Accept") != "d" {
		t.Errorf("after StripWard: %v", h)
	}
}

// TestCheckAppliesTheGuardsRules: one set of header rules, whatever the
// protocol. Each request of the shared hostile table, and a few more, gets
// the same status and reason from Guard.Check (HTTP/2) as from the guard's
// parser of an HTTP/1.1 head.
func TestCheckAppliesTheGuardsRules(t *testing.T) {
	g := &Guard{}
	g.init()
	type req struct {
		name   string
		target string
		host   string
		header [][2]string
	}
	var reqs []req
	for _, h := range proxytest.HostileRequests() {
		reqs = append(reqs, req{h.Name, "/p" + h.Path, "example.com", h.Header})
	}
	reqs = append(reqs,
		req{"clean", "/p?q=1", "example.com", [][2]string{{"X-Ward-User", "forged, stripped later"}}},
		req{"control character in a value", "/p", "example.com", [][2]string{{"X-A", "a\x01b"}}},
		req{"bad host", "/p", "exa mple.com", nil},
		req{"bad escape", "/p%zz", "example.com", nil},
		req{"head too large", "/p", "example.com", [][2]string{{"X-Big", strings.Repeat("b", DefaultMaxHeaderBytes)}}},
		req{"exactly the field limit", "/p", "example.com", fields(DefaultMaxHeaders - 1)},
		req{"one field too many", "/p", "example.com", fields(DefaultMaxHeaders)},
	)
	for _, c := range reqs {
		var b strings.Builder
		fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", c.target, c.host)
		r := &http.Request{Method: "GET", RequestURI: c.target, Host: c.host, Header: http.Header{}, Proto: "HTTP/2.0", ProtoMajor: 2}
		for _, f := range c.header {
			fmt.Fprintf(&b, "%s: %s\r\n", f[0], f[1])
			r.Header[f[0]] = append(r.Header[f[0]], f[1])
		}
		b.WriteString("\r\n")
		var h headParser
		_, v1 := h.parse([]byte(b.String()), &g.lim)
		got := g.Check(r)
		switch {
		case v1 == nil && got != nil:
			t.Errorf("%s: HTTP/1.1 passes, HTTP/2 refused: %d %s", c.name, got.Status, got.Reason)
		case v1 != nil && got == nil:
			t.Errorf("%s: HTTP/1.1 refused (%d %s), HTTP/2 passes", c.name, v1.status, v1.reason)
		case v1 != nil && (v1.status != got.Status || v1.reason != got.Reason):
			t.Errorf("%s: HTTP/1.1 %d %s, HTTP/2 %d %s", c.name, v1.status, v1.reason, got.Status, got.Reason)
		}
	}
	// HTTP/1.x requests passed the guard on their connection already.
	if err := g.Check(&http.Request{ProtoMajor: 1, Header: http.Header{"X_a": {"b"}}}); err != nil {
		t.Errorf("HTTP/1.1 request checked again: %v", err)
	}
}

// fields returns n distinct header fields.
func fields(n int) [][2]string {
	f := make([][2]string, n)
	for i := range f {
		f[i] = [2]string{fmt.Sprintf("X-F%d", i), "x"}
	}
	return f
}

// FuzzCheckMatchesGuard: for any header field and target that an HTTP/1.1
// head can carry as one line each, Guard.Check (HTTP/2) and the guard's
// head parser (HTTP/1.1) agree on whether and why the request is refused.
func FuzzCheckMatchesGuard(f *testing.F) {
	for _, s := range [][3]string{
		{"X-Ward-User", "admin", "/p"}, {"x_ward_user", "admin", "/p"}, {"X-Ward_User", "a", "/p?q=%41"},
		{"X A", "b", "/p"}, {"X-A ", "b", "/p"}, {"X-A", "a\x00b", "/p"}, {"X-A", "caf\xc3\xa9", "/a%zz"},
		{"X-\x01", "b", "/p"}, {"X-A", "b", "/p#f"}, {"X-A", "b", "*"}, {"Accept", "*/*", "/caf%C3%A9"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	g := &Guard{}
	g.init()
	f.Fuzz(func(t *testing.T, name, value, target string) {
		if name == "" || isOWS(name[0]) || strings.ContainsAny(name, ":\r\n") || strings.ContainsAny(value, "\r\n") ||
			target == "" || strings.IndexFunc(target, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return // not one header line and one request-line token
		}
		switch strings.ToLower(name) {
		case "host", "content-length", "transfer-encoding", "trailer":
			return // framing fields: HTTP/2 frames bodies itself
		}
		head := "GET " + target + " HTTP/1.1\r\nHost: example.com\r\n" + name + ":" + value + "\r\n\r\n"
		var h headParser
		_, v1 := h.parse([]byte(head), &g.lim)
		r := &http.Request{Method: "GET", RequestURI: target, Host: "example.com", Proto: "HTTP/2.0", ProtoMajor: 2,
			Header: http.Header{name: {value}}}
		got := g.Check(r)
		switch {
		case v1 == nil && got != nil:
			t.Fatalf("%q: HTTP/1.1 passes, HTTP/2 refused: %s", head, got.Reason)
		case v1 != nil && got == nil:
			t.Fatalf("%q: HTTP/1.1 refused (%s), HTTP/2 passes", head, v1.reason)
		case v1 != nil && v1.reason != got.Reason:
			t.Fatalf("%q: HTTP/1.1 %s, HTTP/2 %s", head, v1.reason, got.Reason)
		}
	})
}

// TestRestoreWardPutsBackOnlyWardsHeaders: what a client's Connection
// header took from the outbound request, RestoreWard puts back when it is
// Ward's own, and nothing else.
func TestRestoreWardPutsBackOnlyWardsHeaders(t *testing.T) {
	in := http.Header{"X-Ward-Identity": {"token"}, "X-Ward-Client-Ip": {"192.0.2.1"}, "X-Custom": {"hop"}, "Accept": {"*/*"}}
	out := http.Header{"Accept": {"*/*"}} // what is left after hop-by-hop removal
	RestoreWard(out, in)
	if out.Get("X-Ward-Identity") != "token" || out.Get("X-Ward-Client-Ip") != "192.0.2.1" {
		t.Errorf("Ward's headers not put back: %v", out)
	}
	if out.Get("X-Custom") != "" {
		t.Errorf("a header that is not Ward's came back: %v", out)
	}
	in["X-Ward-Identity"][0] = "changed"
	if out.Get("X-Ward-Identity") != "token" {
		t.Error("RestoreWard shares its values with the inbound header")
	}
}
