package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
)

// startServer runs a real Ward server in-process and returns it with its
// data directory, which operator commands find it by.
func startServer(t *testing.T) (*control.Server, string) {
	t.Helper()
	srv := controltest.Start(t, nil)
	return srv, srv.DataDir()
}

// ward runs the CLI with args and returns its standard output and error.
func ward(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errw bytes.Buffer
	root := NewRoot(&out, &errw)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errw.String(), err
}

var keyLine = regexp.MustCompile(`^wak_([a-z2-7]{8})_[A-Za-z0-9_-]{43}\n$`)

func TestAPIKeyCommands(t *testing.T) {
	srv, dir := startServer(t)
	ctx := context.Background()

	out, errOut, err := ward(t, "--data-dir", dir, "apikey", "create", "--app", "billing", "--routes", "public-orders,public-invoices", "--ttl", "720h")
	if err != nil {
		t.Fatal(err)
	}
	m := keyLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("create printed %q, want the key alone on stdout", out)
	}
	key, prefix := strings.TrimSpace(out), m[1]
	for _, want := range []string{"prefix " + prefix, "app billing", "routes public-orders,public-invoices", "expires 20", "cannot be shown again"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("create's stderr lacks %q:\n%s", want, errOut)
		}
	}
	// The server keeps only the hash of exactly that key.
	recs, err := srv.Store().ListAPIKeys(ctx)
	if err != nil || len(recs) != 1 || recs[0].Hash != sha256.Sum256([]byte(key)) || recs[0].ID != "billing" {
		t.Fatalf("stored %+v, %v", recs, err)
	}
	if d := time.Until(recs[0].Expires); d < 719*time.Hour || d > 720*time.Hour {
		t.Errorf("stored expiry in %s, want 720h", d)
	}

	out, _, err = ward(t, "--data-dir", dir, "apikey", "create", "--app", "mobile", "--routes", "*")
	if err != nil {
		t.Fatal(err)
	}
	mobile := keyLine.FindStringSubmatch(out)[1]

	out, _, err = ward(t, "--data-dir", dir, "apikey", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "PREFIX APP ROUTES EXPIRES STATUS" {
		t.Fatalf("list:\n%s", out)
	}
	rows := map[string][]string{} // by prefix: keys made in one second list in prefix order
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	if f := rows[prefix]; len(f) != 5 || f[1] != "billing" || f[2] != "public-orders,public-invoices" || !strings.HasPrefix(f[3], "20") || f[4] != "active" {
		t.Errorf("list row %q", f)
	}
	if f := rows[mobile]; len(f) != 5 || f[1] != "mobile" || f[2] != "*" || f[3] != "never" || f[4] != "active" {
		t.Errorf("list row %q", f)
	}
	if strings.Contains(out, key[len(key)-43:]) {
		t.Fatal("list shows the key")
	}

	out, _, err = ward(t, "--data-dir", dir, "apikey", "revoke", prefix)
	if err != nil || out != "revoked "+prefix+" (app billing)\n" {
		t.Fatalf("revoke: %q, %v", out, err)
	}
	out, _, err = ward(t, "--data-dir", dir, "apikey", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var keys []control.APIKeyInfo
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	status := map[string]string{}
	for _, k := range keys {
		status[k.Prefix] = k.Status
	}
	if len(keys) != 2 || status[prefix] != control.StatusRevoked || status[mobile] != control.StatusActive {
		t.Fatalf("after revoke: %+v", keys)
	}
}

func TestAPIKeyCommandErrors(t *testing.T) {
	srv, dir := startServer(t)
	for _, tt := range []struct {
		name string
		args []string
		says string
	}{
		{"no app", []string{"apikey", "create", "--routes", "orders"}, `"app" not set`},
		{"no routes", []string{"apikey", "create", "--app", "billing"}, `"routes" not set`},
		{"empty routes", []string{"apikey", "create", "--app", "billing", "--routes", ""}, "at least one route"},
		{"negative ttl", []string{"apikey", "create", "--app", "billing", "--routes", "orders", "--ttl", "-1h"}, "positive duration"},
		{"ttl not a duration", []string{"apikey", "create", "--app", "billing", "--routes", "orders", "--ttl", "month"}, `invalid argument "month"`},
		{"ttl over a year", []string{"apikey", "create", "--app", "billing", "--routes", "orders", "--ttl", "9000h"}, "bad_ttl"},
		{"bad app", []string{"apikey", "create", "--app", "Billing", "--routes", "orders"}, "bad_app"},
		{"bad route", []string{"apikey", "create", "--app", "billing", "--routes", "orders,*"}, "bad_routes"},
		{"revoke without prefix", []string{"apikey", "revoke"}, "give the prefix"},
		{"revoke two", []string{"apikey", "revoke", "aaaaaaaa", "bbbbbbbb"}, "give the prefix"},
		{"revoke bad prefix", []string{"apikey", "revoke", "Nope"}, "bad_prefix"},
		{"revoke unknown", []string{"apikey", "revoke", "aaaaaaaa"}, "not_found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := ward(t, append([]string{"--data-dir", dir}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("got %v, want an error saying %s", err, tt.says)
			}
			if out != "" {
				t.Fatalf("a failed command printed %q", out)
			}
		})
	}
	if recs, err := srv.Store().ListAPIKeys(context.Background()); err != nil || len(recs) != 0 {
		t.Fatalf("failed commands stored %+v, %v", recs, err)
	}
	if _, _, err := ward(t, "apikey", "list"); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("list without a server: %v", err)
	}
}

func TestServerEdgeNamesFlag(t *testing.T) {
	_, _, err := ward(t, "--data-dir", t.TempDir(), "server", "--trust-domain", "example.org",
		"--listen", "127.0.0.1:0", "--public-listen", "127.0.0.1:0", "--edge-names", "localhost,*")
	if err == nil || !strings.Contains(err.Error(), `--edge-names: "*"`) {
		t.Fatalf("bad --edge-names: %v", err)
	}
}
