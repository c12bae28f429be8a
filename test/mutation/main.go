// Command mutation measures how well the tests guard Ward's security
// decisions: it breaks one invariant at a time (a mutant: one small,
// realistic bug in the source), runs the tests of the package that holds
// it, and counts the mutant as killed when they fail. It prints a score per
// package and exits non-zero when a mutant survives that is not listed as
// harmless, when a mutant no longer applies to the source, or when a mutant
// does not compile.
//
// Mutants are a hand-written table (mutants.go) of semantic changes, each
// naming the invariant it breaks, rather than the operator flips of a
// generic tool: an operator flip in a log message or a metric says nothing
// about a security decision, and a table keeps the run short enough for CI.
// The source tree is never written: each mutant reaches the compiler through
// `go test -overlay`, so an interrupted run leaves nothing behind.
//
// Usage:
//
//	go run ./test/mutation                 every mutant
//	go run ./test/mutation -only policy    mutants whose id starts with "policy"
//	go run ./test/mutation -list           the table, without running it
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Mutant is one deliberate bug.
type Mutant struct {
	ID   string // unique, starts with the package's short name
	Pkg  string // package directory, relative to the module root ("internal/policy")
	File string // file within Pkg
	From string // text that must occur exactly once in File
	To   string // what it becomes
	Run  string // go test -run pattern; "" runs the whole package

	// TestPkg, when set, is the package whose tests run instead of Pkg's:
	// for code whose behaviour only a caller's tests can observe (the mesh
	// client's forwarding, through the gateway that uses it).
	TestPkg string
	Why     string // the invariant it breaks

	// Harmless, when set, says why a surviving mutant does not weaken a
	// security decision; such a survivor is reported but does not fail the
	// run. docs/testing.md lists each.
	Harmless string
}

// canary is a mutant that changes only a comment: it must survive.
var canary = Mutant{
	ID: "canary", Pkg: "internal/policy", File: "engine.go",
	From: "// Decide says whether req is allowed.",
	To:   "// Decide says whether req is allowed (canary).",
	Why:  "nothing: a comment",
}

type outcome int

const (
	killed outcome = iota
	survived
	broken // does not apply or does not compile: the table needs care
)

type result struct {
	m       Mutant
	outcome outcome
	detail  string
	elapsed time.Duration
}

func main() { os.Exit(run()) }

// run runs the table and returns the exit status, so that its deferred
// clean-up runs.
func run() int {
	var (
		only    = flag.String("only", "", "run only mutants whose id starts with this")
		list    = flag.Bool("list", false, "print the table and exit")
		jobs    = flag.Int("j", runtime.NumCPU(), "mutants tested at once")
		timeout = flag.Duration("timeout", 4*time.Minute, "go test -timeout for one mutant")
		budget  = flag.Duration("budget", 40*time.Minute, "stop starting mutants after this long")
		verbose = flag.Bool("v", false, "print go test's output for survivors and broken mutants")
	)
	flag.Parse()

	root, err := moduleRoot()
	if err != nil {
		fatal(err)
	}
	var todo []Mutant
	for _, m := range mutants {
		if strings.HasPrefix(m.ID, *only) {
			todo = append(todo, m)
		}
	}
	if err := checkTable(mutants); err != nil {
		fatal(err)
	}
	if *list {
		for _, m := range todo {
			fmt.Printf("%-34s %s/%s\n    %s\n", m.ID, m.Pkg, m.File, m.Why)
		}
		return 0
	}
	if len(todo) == 0 {
		fatal(fmt.Errorf("no mutant id starts with %q", *only))
	}
	tmp, err := os.MkdirTemp("", "ward-mutation-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithTimeout(context.Background(), *budget)
	defer cancel()
	start := time.Now()
	// The canary changes nothing that runs: if it is "killed", the tests
	// fail whatever the mutant, and no kill below would mean anything.
	if r := test(ctx, root, tmp, canary, *timeout); r.outcome != survived {
		os.RemoveAll(tmp)
		fatal(fmt.Errorf("the canary, a comment changed in %s/%s, was %s: the harness is broken:\n%s", canary.Pkg, canary.File, r.outcome, indent(r.detail)))
	}
	results := make([]result, len(todo))
	var (
		wg   sync.WaitGroup
		next = make(chan int)
		mu   sync.Mutex
	)
	for range *jobs {
		wg.Go(func() {
			for i := range next {
				r := test(ctx, root, tmp, todo[i], *timeout)
				results[i] = r
				mu.Lock()
				fmt.Printf("%-9s %-34s %5.1fs  %s\n", r.outcome, r.m.ID, r.elapsed.Seconds(), r.m.Why)
				if *verbose && r.outcome != killed || r.outcome == broken {
					fmt.Println(indent(r.detail))
				}
				mu.Unlock()
			}
		})
	}
	ran := 0
	for i := range todo {
		if ctx.Err() != nil {
			break
		}
		next <- i
		ran++
	}
	close(next)
	wg.Wait()
	if ran < len(todo) {
		fmt.Printf("\nbudget of %v spent: %d of %d mutants not run\n", *budget, len(todo)-ran, len(todo))
	}
	if !report(results[:ran], time.Since(start)) || ran < len(todo) {
		return 1
	}
	return 0
}

func (o outcome) String() string {
	switch o {
	case killed:
		return "killed"
	case survived:
		return "SURVIVED"
	}
	return "BROKEN"
}

// checkTable refuses duplicate ids and incomplete entries.
func checkTable(ms []Mutant) error {
	seen := map[string]bool{}
	for _, m := range ms {
		switch {
		case m.ID == "" || m.Pkg == "" || m.File == "" || m.From == "" || m.Why == "":
			return fmt.Errorf("mutant %q: id, pkg, file, from and why are required", m.ID)
		case m.From == m.To:
			return fmt.Errorf("mutant %s changes nothing", m.ID)
		case seen[m.ID]:
			return fmt.Errorf("mutant id %s used twice", m.ID)
		}
		seen[m.ID] = true
	}
	return nil
}

// test applies m through an overlay and runs its package's tests.
func test(ctx context.Context, root, tmp string, m Mutant, timeout time.Duration) (r result) {
	start := time.Now()
	r = result{m: m, outcome: broken}
	defer func() { r.elapsed = time.Since(start) }()

	path := filepath.Join(root, m.Pkg, m.File)
	src, err := os.ReadFile(path)
	if err != nil {
		r.detail = err.Error()
		return r
	}
	if n := bytes.Count(src, []byte(m.From)); n != 1 {
		r.detail = fmt.Sprintf("%s: the text to mutate occurs %d times, want exactly once:\n%s", path, n, m.From)
		return r
	}
	dir := filepath.Join(tmp, m.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.detail = err.Error()
		return r
	}
	mutated := filepath.Join(dir, m.File)
	if err := os.WriteFile(mutated, bytes.Replace(src, []byte(m.From), []byte(m.To), 1), 0o600); err != nil {
		r.detail = err.Error()
		return r
	}
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{path: mutated}})
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o600); err != nil {
		r.detail = err.Error()
		return r
	}

	args := []string{"test", "-count=1", "-overlay", overlayFile, "-timeout", timeout.String()}
	if m.Run != "" {
		args = append(args, "-run", m.Run)
	}
	args = append(args, "./"+cmp.Or(m.TestPkg, m.Pkg)+"/")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	r.detail = string(out)
	var exit *exec.ExitError
	switch {
	case bytes.Contains(out, []byte("no test files")) || bytes.Contains(out, []byte("testing: warning: no tests to run")):
		r.detail = "no test ran:\n" + r.detail
	case err == nil:
		r.outcome = survived
	case ctx.Err() != nil:
		r.detail = "budget spent while testing: " + ctx.Err().Error()
	case !errors.As(err, &exit):
		r.detail = err.Error() + "\n" + r.detail
	case bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")):
		r.detail = "the mutant does not compile:\n" + r.detail
	case exit.ExitCode() == 1 && bytes.Contains(out, []byte("FAIL")):
		// A test failed, panicked or timed out: go test's own verdict.
		r.outcome = killed
	default:
		r.detail = fmt.Sprintf("go test ended with %v, not with a test failure:\n%s", err, r.detail)
	}
	return r
}

// report prints the score per package and the survivors; it reports
// whether the run passes.
func report(results []result, elapsed time.Duration) bool {
	type score struct{ killed, total int }
	byPkg := map[string]*score{}
	ok := true
	var harmless, bad []result
	for _, r := range results {
		s := byPkg[r.m.Pkg]
		if s == nil {
			s = &score{}
			byPkg[r.m.Pkg] = s
		}
		s.total++
		switch {
		case r.outcome == killed:
			s.killed++
		case r.outcome == survived && r.m.Harmless != "":
			harmless = append(harmless, r)
		default:
			bad = append(bad, r)
			ok = false
		}
	}
	pkgs := make([]string, 0, len(byPkg))
	for p := range byPkg {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	fmt.Printf("\nmutation score per package (%d mutants in %s)\n", len(results), elapsed.Round(time.Second))
	all := score{}
	for _, p := range pkgs {
		s := byPkg[p]
		all.killed += s.killed
		all.total += s.total
		fmt.Printf("  %-22s %3d/%-3d killed  %5.1f%%\n", p, s.killed, s.total, 100*float64(s.killed)/float64(s.total))
	}
	if all.total > 0 {
		fmt.Printf("  %-22s %3d/%-3d killed  %5.1f%%\n", "total", all.killed, all.total, 100*float64(all.killed)/float64(all.total))
	}
	for _, r := range harmless {
		fmt.Printf("survived, harmless: %s: %s\n", r.m.ID, r.m.Harmless)
	}
	for _, r := range bad {
		fmt.Printf("%s: %s (%s/%s): %s\n", r.outcome, r.m.ID, r.m.Pkg, r.m.File, r.m.Why)
	}
	if ok {
		fmt.Println("mutation: every mutant killed or justified")
	}
	return ok
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run inside Ward's module")
	}
	return filepath.Dir(mod), nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if len(s) > 4000 {
		s = "...\n" + s[len(s)-4000:]
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mutation:", err)
	os.Exit(2)
}
