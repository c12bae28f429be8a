package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// TestDashboardDocWalkthrough runs docs/dashboard.md's "Try it" as
// written: a login link works once and gives a session cookie, the
// session reads the graph, nothing does without it, a change without the
// CSRF token is refused, and the pages carry the strict CSP.
func TestDashboardDocWalkthrough(t *testing.T) {
	need(t, "bash", "curl", "sed", "grep")
	text := runWalkthrough(t, t.TempDir(), docBlock(t, "docs/dashboard.md", "## Try it"))
	for _, want := range []string{
		"login: 303\n", "again: 401\n", `"operator":"admin"`, `"edges":`, "no session: 401\n", "no CSRF token: 403\n",
		"script-src 'self'", "frame-ancestors 'none'",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`"csrf":"[A-Za-z0-9_-]{43}"`).MatchString(text) {
		t.Error("the session has no CSRF token")
	}
	if strings.Contains(text, "unsafe-inline") {
		t.Error("the CSP allows inline code")
	}
}
