package detect_test

import (
	"os"
	"strings"
	"testing"

	"github.com/wardsec/ward/internal/resource"
)

// TestDocsReferenceBlock: the reference example of docs/detection.md
// (the yaml block after the signal table) is a valid resource set, with the fields of
// every signal it shows.
func TestDocsReferenceBlock(t *testing.T) {
	raw, err := os.ReadFile("../../docs/detection.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(raw), "**DetectionRule** resources say")
	_, rest, ok := strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/detection.md has no yaml block")
	}
	objs, err := resource.Parse("docs/detection.md", []byte(block))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, o := range objs {
		if s, ok := o.Spec.(*resource.DetectionRuleSpec); ok {
			seen[s.Signal] = true
			if s.Signal == resource.SignalVolume && s.Tolerance != 5 || s.Signal == resource.SignalWAFHit && !s.WouldBlock {
				t.Errorf("%s: %+v", o.Metadata.Name, s)
			}
		}
	}
	if !seen[resource.SignalVolume] || !seen[resource.SignalWAFHit] {
		t.Fatalf("signals shown: %v", seen)
	}
}
