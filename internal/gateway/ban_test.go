package gateway_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/gateway"
)

func banDoc(name, target string, expires time.Time) string {
	return fmt.Sprintf("---\napiVersion: ward/v1\nkind: Ban\nmetadata: {name: %s}\nspec:\n  %s\n  expires: %s\n  reason: test\n  by: operator test\n",
		name, target, expires.UTC().Format(time.RFC3339))
}

// TestBanStage: a Ban in a snapshot refuses its caller 403 banned before
// authentication (a banned API key with a wrong secret is still "banned",
// not "api_key_invalid"), leaves others alone, records the ban's name for
// the operator and not for the client, and stops at its expiry without a
// new snapshot.
func TestBanStage(t *testing.T) {
	e := newEdgeFromSnapshot(t)
	base := readConfig(t, e)
	prefix := strings.SplitN(strings.TrimPrefix(e.apiKey, "wak_"), "_", 2)[0]
	other := e.addKey("other", []string{"*"}, time.Time{})
	alice := e.jwt("alice", "orders:read", nil)
	soon := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	v2 := base + banDoc("bad-key", "apiKey: "+prefix, time.Now().Add(time.Hour)) +
		banDoc("bad-user", "user: {issuer: '"+e.idp.URL+"', subject: alice}", time.Now().Add(time.Hour))
	if err := e.gw.Apply(gateway.Snapshot{Origin: "server version 2", Version: 2, Data: []byte(v2)}); err != nil {
		t.Fatal(err)
	}
	before := e.orders.app.count()
	e.expectRefused(t, e.do("GET", "/orders/1", e.apiKey, alice, nil), refusal{403, "banned"}, before, e.orders.app)
	e.expectRefused(t, e.do("GET", "/orders/1", wrongSecret(e.apiKey), alice, nil), refusal{403, "banned"}, before, e.orders.app)
	// Another key gets past the key ban, but alice is banned as a user.
	e.expectRefused(t, e.do("GET", "/orders/1", other, alice, nil), refusal{403, "banned"}, before, e.orders.app)
	if s := e.do("GET", "/orders/1", other, e.jwt("bob", "orders:read", nil), nil).StatusCode; s != 200 {
		t.Fatalf("bob with another key = %d, want 200", s)
	}
	var found bool
	for _, ev := range e.events.Events() {
		if ev.Reason == "banned" && strings.Contains(ev.HTTP.Message, "Ban bad-key") {
			found = true
		}
	}
	if !found {
		t.Fatal("no access record names the ban")
	}

	// A ban on every loopback address, ending in about two seconds.
	v3 := v2 + banDoc("loopback", "source: 127.0.0.0/8", soon)
	if err := e.gw.Apply(gateway.Snapshot{Origin: "server version 3", Version: 3, Data: []byte(v3)}); err != nil {
		t.Fatal(err)
	}
	resp := e.do("GET", "/catalog/x", "", "", nil)
	if resp.StatusCode != 403 || strings.Contains(bodyOf(resp), "loopback") {
		t.Fatalf("banned source: %d", resp.StatusCode)
	}
	time.Sleep(time.Until(soon) + 50*time.Millisecond)
	if s := e.do("GET", "/catalog/x", "", "", nil).StatusCode; s != 200 {
		t.Fatalf("after the ban's expiry: %d, want 200", s)
	}
}

// TestBanInvalidSnapshot: a snapshot with an invalid Ban is refused whole
// and the running bans stay.
func TestBanInvalidSnapshot(t *testing.T) {
	e := newEdgeFromSnapshot(t)
	base := readConfig(t, e)
	bad := base + "---\napiVersion: ward/v1\nkind: Ban\nmetadata: {name: b}\nspec: {source: 127.0.0.999, expires: 2030-01-01T00:00:00Z, reason: x}\n"
	err := e.gw.Apply(gateway.Snapshot{Origin: "server version 2", Version: 2, Data: []byte(bad)})
	if err == nil || !strings.Contains(err.Error(), "spec.source") {
		t.Fatalf("Apply = %v, want an error on spec.source", err)
	}
}

// wrongSecret returns key with another first character of its secret.
func wrongSecret(key string) string {
	i := len("wak_") + 8 + 1
	c := byte('A')
	if key[i] == c {
		c = 'B'
	}
	return key[:i] + string(c) + key[i+1:]
}
