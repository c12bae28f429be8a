package policy

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzDecide decides arbitrary requests against the test policies. Decide
// must never panic, and whatever it allows must match the deciding rule:
// the canonical path is the rule's exact path or starts with its prefix, and
// so does the path a server would see by decoding and cleaning the request's.
func FuzzDecide(f *testing.F) {
	e := compile(f, services+catalogPolicy+`  - from: ["*"]
    methods: ["*"]
    paths: ["/pub/*", "/"]
`)
	f.Fuzz(func(t *testing.T, peerPath, method, rawPath string) {
		peer, err := spiffeid.FromPath(td, peerPath)
		if err != nil {
			peer = spiffeid.ID{}
		}
		d := e.Decide(Request{Target: "catalog", Peer: peer, Method: method, Path: rawPath})
		if !d.Allow {
			if d.Reason == ReasonAllowed || d.DryRun {
				t.Fatalf("inconsistent denial %+v", d)
			}
			return
		}
		canon, err := NormalizePath(rawPath)
		if err != nil || d.Reason != ReasonAllowed || d.Policy != "catalog-callers" {
			t.Fatalf("allowed %q: %+v, path error %v", rawPath, d, err)
		}
		rawPath, _, _ = strings.Cut(rawPath, "?")
		decoded, err := url.PathUnescape(rawPath)
		if err != nil {
			t.Fatalf("allowed %q, which does not decode: %v", rawPath, err)
		}
		cleaned := path.Clean("/" + decoded)
		r := e.targets["catalog"].enforce.rules[d.Rule]
		for _, p := range r.paths {
			if p.prefix && strings.HasPrefix(canon, p.s) && (strings.HasPrefix(cleaned+"/", p.s)) ||
				!p.prefix && canon == p.s && cleaned == path.Clean(p.s) {
				return
			}
		}
		t.Fatalf("rule %d allowed %q (canonical %q, cleaned %q), outside its paths %+v", d.Rule, rawPath, canon, cleaned, r.paths)
	})
}
