package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTableApplies checks the table without running it: every mutant is
// complete, its text occurs exactly once in its file, and every mutant
// allowed to survive is listed with its reason in docs/testing.md.
func TestTableApplies(t *testing.T) {
	if err := checkTable(mutants); err != nil {
		t.Fatal(err)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile(filepath.Join(root, "docs", "testing.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append([]Mutant{canary}, mutants...) {
		src, err := os.ReadFile(filepath.Join(root, m.Pkg, m.File))
		if err != nil {
			t.Errorf("%s: %v", m.ID, err)
			continue
		}
		if n := bytes.Count(src, []byte(m.From)); n != 1 {
			t.Errorf("%s: its text occurs %d times in %s/%s, want once", m.ID, n, m.Pkg, m.File)
		}
		if m.Harmless != "" && !strings.Contains(string(docs), "`"+m.ID+"`") {
			t.Errorf("%s may survive, but docs/testing.md does not list it", m.ID)
		}
	}
}

func TestCheckTableRefusesBadEntries(t *testing.T) {
	ok := Mutant{ID: "a/x", Pkg: "p", File: "f.go", From: "x", To: "y", Why: "w"}
	for name, ms := range map[string][]Mutant{
		"no why":       {{ID: "a/x", Pkg: "p", File: "f.go", From: "x", To: "y"}},
		"no change":    {{ID: "a/x", Pkg: "p", File: "f.go", From: "x", To: "x", Why: "w"}},
		"duplicate id": {ok, ok},
	} {
		if checkTable(ms) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := checkTable([]Mutant{ok}); err != nil {
		t.Errorf("a good entry: %v", err)
	}
}
