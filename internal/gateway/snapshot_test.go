package gateway_test

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/gateway"
)

// newEdgeFromSnapshot is newEdge with the gateway on a control plane
// snapshot (version 1 of the fixture's resources) instead of the file.
func newEdgeFromSnapshot(t *testing.T) *edge {
	t.Helper()
	return newEdgeWith(t, func(c *gateway.Config) {
		data, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			t.Fatal(err)
		}
		c.ConfigFile = ""
		c.Initial = &gateway.Snapshot{Origin: "server version 1", Version: 1, Data: data}
	})
}

func reloadEvents(r *audit.Recorder) []audit.Event {
	var out []audit.Event
	for _, e := range r.Events() {
		if e.Type == "config.reload" {
			out = append(out, e)
		}
	}
	return out
}

// TestApplySnapshot: a control plane snapshot changes the gateway's
// decisions as soon as Apply returns, with a fresh JWT verifier; bad
// snapshots are refused with their error and the running decisions stay;
// each attempt is in the audit trail; identical data changes nothing.
func TestApplySnapshot(t *testing.T) {
	e := newEdgeFromSnapshot(t)
	base := readConfig(t, e)
	alice := e.jwt("alice", "orders:read", nil)
	status := func(path, bearer string) int {
		t.Helper()
		key := ""
		if bearer != "" {
			key = e.apiKey
		}
		return e.do("GET", path, key, bearer, nil).StatusCode
	}
	if s := status("/catalog/x", ""); s != 200 {
		t.Fatalf("initial: /catalog/x = %d", s)
	}
	if s := status("/orders/1", alice); s != 200 {
		t.Fatalf("initial: /orders/1 = %d", s)
	}
	if v := e.gw.ConfigVersion(); v != 1 {
		t.Fatalf("ConfigVersion = %d, want 1", v)
	}

	// Version 2 closes /catalog/* at the edge and moves the issuer to
	// another audience, so alice's token no longer verifies.
	v2 := strings.Replace(base, `paths: ["/catalog/*", "/limited/*", "/limited"]`, `paths: ["/limited/*", "/limited"]`, 1)
	v2 = strings.Replace(v2, "audiences: [ward-edge]", "audiences: [elsewhere]", 1)
	if v2 == base {
		t.Fatal("fixture changed")
	}
	if err := e.gw.Apply(gateway.Snapshot{Origin: "server version 2", Version: 2, Data: []byte(v2)}); err != nil {
		t.Fatal(err)
	}
	e.expectRefused(t, e.do("GET", "/catalog/x", "", "", nil), refusal{403, "no_rule_matches"}, e.catalog.app.count(), e.catalog.app)
	if s := status("/orders/1", alice); s != 401 {
		t.Errorf("after Apply: /orders/1 with a token for the old audience = %d, want 401", s)
	}
	if s := status("/orders/1", e.jwt("alice", "orders:read", map[string]any{"aud": "elsewhere"})); s != 200 {
		t.Errorf("after Apply: /orders/1 with a token for the new audience = %d, want 200", s)
	}
	if v := e.gw.ConfigVersion(); v != 2 {
		t.Fatalf("ConfigVersion = %d, want 2", v)
	}
	evs := reloadEvents(e.events)
	if len(evs) != 1 {
		t.Fatalf("reload events = %+v, want one", evs)
	}
	if ev := evs[0]; ev.Decision != "allow" || ev.Fields["changes"] != "~AccessPolicy/catalog-callers ~Issuer/corp" ||
		ev.Fields["version"] != "2" || ev.Fields["previous_version"] != "1" || ev.Fields["origin"] != "server version 2" ||
		ev.Subject != "spiffe://example.org/gateway/edge" {
		t.Errorf("applied event = %+v", ev)
	}

	bad := []struct{ name, yaml string }{
		{"bad YAML", "apiVersion: ward/v1\nkind: Route\nmetadata: {name: r}\nspec: {pathPrefix: /x\n"},
		{"route to a missing service", base + "---\napiVersion: ward/v1\nkind: Route\nmetadata: {name: broken}\nspec: {pathPrefix: /ghost, service: ghost}\n"},
		{"CEL that does not compile", strings.Replace(base, `when: '"orders:read" in user.scopes'`, `when: '"orders:read" in'`, 1)},
	}
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if tc.yaml == base {
				t.Fatal("fixture changed")
			}
			err := e.gw.Apply(gateway.Snapshot{Origin: "server version 3", Version: 3, Data: []byte(tc.yaml)})
			if err == nil || !strings.Contains(err.Error(), "server version 3:") {
				t.Fatalf("Apply = %v, want an error naming the snapshot", err)
			}
			if s := status("/catalog/x", ""); s != 403 {
				t.Errorf("after a refused snapshot: /catalog/x = %d, want 403 still", s)
			}
			if s := status("/orders/1", alice); s != 401 {
				t.Errorf("after a refused snapshot: /orders/1 = %d, want 401 still", s)
			}
			if v := e.gw.ConfigVersion(); v != 2 {
				t.Errorf("ConfigVersion = %d, want 2 still", v)
			}
			evs := reloadEvents(e.events)
			if len(evs) != 2+i {
				t.Fatalf("reload events = %d, want %d", len(evs), 2+i)
			}
			if ev := evs[len(evs)-1]; ev.Decision != "deny" || ev.Reason != "invalid_config" || ev.Fields["error"] != err.Error() || ev.Fields["version"] != "3" {
				t.Errorf("refused event = %+v", ev)
			}
		})
	}

	n := len(reloadEvents(e.events))
	if err := e.gw.Apply(gateway.Snapshot{Origin: "server version 4", Version: 4, Data: []byte(v2)}); err != nil {
		t.Fatalf("identical data: %v", err)
	}
	if got := len(reloadEvents(e.events)); got != n {
		t.Errorf("identical data emitted %d events", got-n)
	}
	if v := e.gw.ConfigVersion(); v != 4 {
		t.Errorf("ConfigVersion after identical data = %d, want 4", v)
	}

	// And back: what was denied is allowed again.
	if err := e.gw.Apply(gateway.Snapshot{Origin: "server version 5", Version: 5, Data: []byte(base)}); err != nil {
		t.Fatal(err)
	}
	if s := status("/catalog/x", ""); s != 200 {
		t.Errorf("after Apply back: /catalog/x = %d, want 200", s)
	}
	if s := status("/orders/1", alice); s != 200 {
		t.Errorf("after Apply back: /orders/1 = %d, want 200", s)
	}
}

// TestApplyRefusedWithConfigFile: a gateway that follows a resource file
// does not also take snapshots (two sources of truth would fight).
func TestApplyRefusedWithConfigFile(t *testing.T) {
	e := newEdge(t)
	err := e.gw.Apply(gateway.Snapshot{Version: 7, Data: []byte(readConfig(t, e) + "# changed\n")})
	if err == nil || !strings.Contains(err.Error(), "edge.yaml") {
		t.Fatalf("Apply = %v, want a refusal naming the file", err)
	}
	if v := e.gw.ConfigVersion(); v != 0 {
		t.Errorf("ConfigVersion = %d, want 0", v)
	}
}

// TestNewChecksConfigSource: exactly one of ConfigFile and Initial, and a
// bad Initial fails New with its error.
func TestNewChecksConfigSource(t *testing.T) {
	e := newEdge(t)
	src := e.source(spiffeid.RequireFromSegments(td, "gateway", "other"))
	good := &gateway.Snapshot{Origin: "server version 1", Version: 1, Data: []byte(readConfig(t, e))}
	for _, tc := range []struct {
		name    string
		file    string
		initial *gateway.Snapshot
		want    string
	}{
		{"both", e.config, good, "exactly one"},
		{"neither", "", nil, "no configuration"},
		{"invalid initial", "", &gateway.Snapshot{Origin: "server version 9", Version: 9,
			Data: []byte("apiVersion: ward/v1\nkind: Route\nmetadata: {name: r}\nspec: {pathPrefix: /x, service: ghost}\n")},
			`server version 9:4: spec.service: no Service named "ghost"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw, err := gateway.New(gateway.Config{Name: "other", TrustDomain: td, Listen: "127.0.0.1:0", TLS: &tls.Config{},
				ConfigFile: tc.file, Initial: tc.initial, Source: src, APIKeys: e.keys, Log: quiet()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
			if gw != nil {
				t.Fatal("New returned a gateway with its error")
			}
		})
	}
}
