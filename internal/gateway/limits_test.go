package gateway_test

import (
	"testing"
)

// TestAnonymousLimitHoldsWhateverTheUserAgent (issue 12 finding 6): an
// anonymous caller that changes its User-Agent on every request still runs
// into the route's limit (2 per minute), while the records keep telling
// the anonymous ids apart.
func TestAnonymousLimitHoldsWhateverTheUserAgent(t *testing.T) {
	e := newEdge(t)
	ids := map[string]bool{}
	for i, ua := range []string{"agent-1", "agent-2", "agent-3", "agent-4"} {
		resp := e.do("GET", "/catalog/anon-limited", "", "", map[string]string{"User-Agent": ua})
		if i < 2 {
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i, resp.StatusCode, bodyOf(resp))
			}
			continue
		}
		if resp.StatusCode != 429 {
			t.Fatalf("request %d with a fresh User-Agent: status %d, want 429", i, resp.StatusCode)
		}
		ev := findEvent(t, e.events, resp.Header.Get("X-Ward-Request-Id"))
		ids[ev.Fields["anonymous_id"]] = true
	}
	if len(ids) != 2 {
		t.Fatalf("records should keep one anonymous id per User-Agent, got %v", ids)
	}
}
