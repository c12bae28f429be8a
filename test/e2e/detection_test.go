package e2e

import (
	"strings"
	"testing"
)

// TestDetectionDocWalkthrough runs the walk-through of docs/detection.md
// as written: a loop of made-up API keys through a real gateway gets the
// address banned by the default credential-cycling rule, shown by
// `ward ban list` and `ward alerts`, then lifted.
func TestDetectionDocWalkthrough(t *testing.T) {
	need(t, "bash", "sed", "curl", "awk", "grep", "seq")
	text := runWalkthrough(t, t.TempDir(), docBlock(t, "docs/detection.md", "## Try it"))
	for _, want := range []string{
		"applied: version 1 (was 0)\n",
		"\n9\n",
		"401 401 401 401 401",
		`"reason":"banned"`,
		"source 127.0.0.1",
		"credential-cycling",
		"DetectionRule/credential-cycling",
		"lifted: version",
		"-Ban/auto-",
		"+Ban/ban-",
		"ban.add",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
