package control_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
)

func banYAML(name, target string, expires time.Time) string {
	return fmt.Sprintf("apiVersion: ward/v1\nkind: Ban\nmetadata: {name: %s}\nspec:\n  %s\n  expires: %s\n  reason: brute force\n  by: operator admin\n",
		name, target, expires.UTC().Format(time.RFC3339))
}

func findEvents(r *audit.Recorder, typ string) []audit.Event {
	var out []audit.Event
	for _, e := range r.Events() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestBans: an admin adds a ban, which every gateway's and sidecar's
// snapshot carries, with a ban.add record; a developer may neither add
// nor lift one; the leader removes it at its expiry with a ban.expire
// record; an admin lifts another with a ban.remove record.
func TestBans(t *testing.T) {
	events := &audit.Recorder{}
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = events })
	if _, err := ts.operator.Apply(t.Context(), files(teams)); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	end := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	if _, err := ts.operator.Apply(ctx, files(banYAML("short", "source: 203.0.113.7", end), banYAML("long", "apiKey: abcdefgh", end.Add(time.Hour)))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*control.Client{ts.gatewayClient(t, "edge"), ts.svcClient(t, "orders")} {
		snap, err := c.Snapshot(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(snap.Documents, "name: short") || !strings.Contains(snap.Documents, "name: long") {
			t.Fatalf("snapshot without the bans:\n%s", snap.Documents)
		}
	}
	adds := findEvents(events, "ban.add")
	if len(adds) != 2 || adds[1].Subject != "Ban/short" || adds[1].Fields["value"] != "203.0.113.7" || adds[1].Fields["reason"] != "brute force" ||
		adds[1].Fields["expires"] == "" || !strings.HasSuffix(adds[1].Actor, "/user/admin") {
		t.Fatalf("ban.add records: %+v", adds)
	}

	dev := ts.operatorClient(t, "dana", control.RoleDeveloper, "orders")
	if _, err := dev.Delete(ctx, control.DeleteRequest{Kind: "Ban", Name: "long"}); apiCode(err) != "role_forbids" {
		t.Errorf("a developer lifting a ban: %v, want role_forbids", err)
	}
	if _, err := dev.Apply(ctx, files(banYAML("mine", "source: 198.51.100.1", end))); apiCode(err) != "role_forbids" {
		t.Errorf("a developer adding a ban: %v, want role_forbids", err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		cur, err := ts.operator.Resources(ctx, "Ban", "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(cur.Documents, "name: short") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired ban is still in the set")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if gone := time.Since(end); gone > 2*time.Second {
		t.Errorf("expired ban removed %v after its end", gone)
	}
	exp := findEvents(events, "ban.expire")
	if len(exp) != 1 || exp[0].Subject != "Ban/short" || exp[0].Actor != "spiffe://example.org/ward/server" {
		t.Fatalf("ban.expire records: %+v", exp)
	}
	if _, err := ts.operator.Delete(ctx, control.DeleteRequest{Kind: "Ban", Name: "long"}); err != nil {
		t.Fatal(err)
	}
	if rm := findEvents(events, "ban.remove"); len(rm) != 1 || rm[0].Subject != "Ban/long" || rm[0].Fields["value"] != "abcdefgh" {
		t.Fatalf("ban.remove records: %+v", rm)
	}
}
