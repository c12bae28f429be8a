package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the injectable app's database
)

// TestWAFFalsePositiveCorpus: ordinary API traffic — the benign corpus of
// internal/waf (JSON with quotes, apostrophes, URLs, markdown and unicode)
// and the demo's kinds of calls — passes a gateway that enforces the WAF
// at paranoia 1: zero blocks, every request reaches the app, and no record
// names a rule.
func TestWAFFalsePositiveCorpus(t *testing.T) {
	w := newWAFSetup(t, "{mode: enforce}", nil)
	waitGateway(t, w)
	data, err := os.ReadFile(filepath.Join(repoRoot(), "internal", "waf", "testdata", "benign.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	type benign struct {
		Method string          `json:"method"`
		Path   string          `json:"path"`
		Body   json.RawMessage `json:"body"`
	}
	var corpus []benign
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var b benign
		if err := json.Unmarshal([]byte(line), &b); err != nil {
			t.Fatal(err)
		}
		corpus = append(corpus, b)
	}
	// The demo's traffic: its tour's calls, with the headers curl and
	// browsers send.
	corpus = append(corpus, benign{"GET", "/orders/1", nil}, benign{"GET", "/catalog/items", nil},
		benign{"GET", "/catalog/items?q=lamp&page=1", nil}, benign{"GET", "/", nil})
	c := w.client()
	blocked := 0
	var ids []string
	for _, b := range corpus {
		var body *strings.Reader
		if b.Body != nil {
			body = strings.NewReader(string(b.Body))
		} else {
			body = strings.NewReader("")
		}
		req, _ := http.NewRequest(b.Method, w.url(b.Path), body)
		if b.Body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
		req.Header.Set("Accept", "application/json, text/plain, */*")
		req.Header.Set("Accept-Language", "fr-FR,fr;q=0.9,en;q=0.8")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ids = append(ids, resp.Header.Get("X-Ward-Request-Id"))
		if resp.StatusCode != 200 {
			blocked++
			t.Errorf("%s %s: %d %s", b.Method, b.Path, resp.StatusCode, resp.Header.Get("X-Ward-Deny-Reason"))
		}
	}
	recs := w.records(len(ids))
	for _, id := range ids {
		if r, ok := recs[id]; !ok {
			t.Errorf("no record of %s", id)
		} else if r.Fields["waf_rules"] != "" {
			t.Errorf("record %s names rules %s", id, r.Fields["waf_rules"])
		}
	}
	t.Logf("false-positive corpus: %d requests at paranoia 1, %d blocked", len(corpus), blocked)
}

// injectable answers /item?id= with a query built by concatenation: the
// textbook SQL injection, for sqlmap to find.
func injectable(t *testing.T) func(http.ResponseWriter, *http.Request) bool {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, secret TEXT);
		INSERT INTO items VALUES (1, 'lamp', 's1'), (2, 'chair', 's2'), (3, 'desk', 's3');`); err != nil {
		t.Fatal(err)
	}
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/item" {
			return false
		}
		rows, err := db.Query("SELECT name FROM items WHERE id = " + r.URL.Query().Get("id")) // deliberately injectable
		if err != nil {
			http.Error(w, "database error", http.StatusInternalServerError)
			return true
		}
		defer rows.Close()
		var names []string
		for rows.Next() {
			var n string
			_ = rows.Scan(&n)
			names = append(names, n)
		}
		fmt.Fprintf(w, "<html><body><h1>Items</h1><ul><li>%s</li></ul></body></html>\n", strings.Join(names, "</li><li>"))
		return true
	}
}

// TestWAFStopsSQLMap runs sqlmap, with tight bounds, against an injectable
// app behind the gateway: with the WAF off it finds the injection (so the
// check can fail), with the WAF enforced it finds nothing. sqlmap sends a
// browser's User-Agent, so that what stops it is the injection rules, not
// the scanner rules.
func TestWAFStopsSQLMap(t *testing.T) {
	need(t, "sqlmap")
	for _, tc := range []struct {
		mode  string
		found bool
	}{{"off", true}, {"enforce", false}} {
		t.Run(tc.mode, func(t *testing.T) {
			w := newWAFSetup(t, "{mode: "+tc.mode+"}", injectable(t))
			waitGateway(t, w)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sqlmap", "-u", w.url("/item?id=1"), "-p", "id",
				"--batch", "--level", "1", "--risk", "1", "--technique", "BEU", "--dbms", "SQLite",
				"--threads", "1", "--timeout", "10", "--retries", "0", "--flush-session", "--disable-coloring",
				"--user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
				"--output-dir", t.TempDir())
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			cmd.Env = append(cmd.Env, noProxyEnv()...)
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("sqlmap did not finish within its bound:\n%s", out)
			}
			text := string(out)
			found := strings.Contains(text, "sqlmap identified the following injection point")
			t.Logf("sqlmap against mode %s: found=%v (exit %v)", tc.mode, found, err)
			if found != tc.found {
				t.Fatalf("sqlmap found an injection: %v, want %v\n%s", found, tc.found, text)
			}
			if !tc.found && !strings.Contains(text, "not injectable") && !strings.Contains(text, "do not appear to be injectable") {
				t.Errorf("sqlmap did not conclude:\n%s", text)
			}
		})
	}
}

// TestWAFDocWalkthrough runs docs/waf.md's example as written: ordinary
// requests pass, an injection is refused with reason waf, the dry-run route
// forwards it, and the records name rule 942100 at ARGS:id for both.
func TestWAFDocWalkthrough(t *testing.T) {
	need(t, "curl", "python3", "bash")
	block := docBlock(t, "docs/waf.md", "## Try it")
	text := runWalkthrough(t, t.TempDir(), block)
	if n := strings.Count(text, "shop: ok\n"); n != 3 {
		t.Errorf("%d answers from the app, want 3 (two ordinary requests, one dry-run hit)", n)
	}
	for _, want := range []string{
		`{"error":"forbidden","reason":"waf","request_id":"`,
		"shop blocked rules 942100 score 5 at ARGS:id\n",
		"beta would_block rules 942100 score 5 at ARGS:id\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(text, "OR '1'") {
		t.Error("the output shows the payload")
	}
}
