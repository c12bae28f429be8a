package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// TestDiscoveryDocWalkthrough runs docs/discovery.md's "Try it" as written:
// two orders instances register and share catalog's calls, one killed
// leaves the set within its TTL, a new one gets traffic, and a clean stop
// loses no call.
func TestDiscoveryDocWalkthrough(t *testing.T) {
	need(t, "bash", "sed", "curl", "python3", "grep", "seq", "sort", "uniq", "wc")
	text := runWalkthrough(t, t.TempDir(), docBlock(t, "docs/discovery.md", "## Try it"))
	spread := regexp.MustCompile(`(?m)^ +([1-9]\d*) orders-1\n +([1-9]\d*) orders-2$`)
	if n := len(spread.FindAllString(text, -1)); n != 2 {
		t.Errorf("%d spreads over both instances, want 2 (before the kill, and after the new instance joined)", n)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^catalog +[0-9a-f]{24} +127\.0\.0\.1:9475 `),
		regexp.MustCompile(`(?m)^orders +[0-9a-f]{24} +127\.0\.0\.1:9473 +\S+ +ok +instance=orders-1 `),
		regexp.MustCompile(`(?m)^orders +[0-9a-f]{24} +127\.0\.0\.1:9474 +\S+ +ok +instance=orders-2 `),
		regexp.MustCompile(`(?m)^\S+ +\d+ +instance\.expire +allow .*orders`),
		regexp.MustCompile(`(?m)^ +30 200$`),
		regexp.MustCompile(`(?m)^\S+ +\d+ +instance\.deregister +allow .*svc/orders`),
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %s", want)
		}
	}
	// After the kill and the expiry, and after the clean stop, one instance.
	lists := regexp.MustCompile(`(?m)^SERVICE +ID .*\n((orders .*\n?)*)`).FindAllStringSubmatch(text, -1)
	if len(lists) < 3 {
		t.Fatalf("%d instance lists in the output, want 3", len(lists))
	}
	for i, want := range map[int]string{1: "instance=orders-2", 2: "instance=orders-1"} {
		rows := strings.Split(strings.TrimSpace(lists[i][1]), "\n")
		if len(rows) != 1 || !strings.Contains(rows[0], want) {
			t.Errorf("instance list %d: %q, want only %s", i+1, lists[i][1], want)
		}
	}
}
