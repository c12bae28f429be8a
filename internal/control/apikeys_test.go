package control_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/control"
)

// client returns a client of the test server that presents cert.
func (ts *testServer) client(t *testing.T, cert *tls.Certificate) *control.Client {
	t.Helper()
	c, err := control.NewClient(ts.URL(), ts.bundle, cert)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// gatewayClient enrolls spiffe://example.org/gateway/<name> and returns a
// client presenting its SVID.
func (ts *testServer) gatewayClient(t *testing.T, name string) *control.Client {
	t.Helper()
	src := ts.sourceFor(t, spiffeid.RequireFromSegments(td, "gateway", name))
	c := ts.client(t, nil)
	c.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	return c
}

// authenticator loads a feed the way a gateway does and returns authn's
// API key authenticator over it.
func authenticator(t *testing.T, feed control.APIKeyFeed) *authn.APIKeys {
	t.Helper()
	recs, err := control.APIKeyRecords(feed)
	if err != nil {
		t.Fatal(err)
	}
	table := authn.NewMemoryAPIKeyStore()
	for _, r := range recs {
		if err := table.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	return authn.NewAPIKeys(table)
}

func authnReason(err error) string {
	var e *authn.Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// TestAPIKeyLifecycle: a created key authenticates through the feed a
// gateway receives, the list shows no secret material, and a revocation
// bumps the version and reaches the gateway as a revoked record.
func TestAPIKeyLifecycle(t *testing.T) {
	events := &audit.Recorder{}
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = events })
	ctx := context.Background()
	gw := ts.gatewayClient(t, "edge")

	feed0, err := gw.APIKeyFeed(ctx, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if feed0.Version != 0 || len(feed0.Keys) != 0 {
		t.Fatalf("new server's feed: %+v", feed0)
	}

	created, err := ts.operator.CreateAPIKey(ctx, "billing", []string{"public-orders", "public-invoices", "public-orders"}, 720*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Key, "wak_"+created.Prefix+"_") || created.App != "billing" ||
		!slices.Equal(created.Scopes, []string{"public-orders", "public-invoices"}) {
		t.Fatalf("created %+v", created)
	}
	if d := time.Until(created.Expires); d < 719*time.Hour || d > 720*time.Hour {
		t.Fatalf("expires in %s, want 720h", d)
	}

	// The gateway's view: the key authenticates for its routes only.
	feed1, err := gw.APIKeyFeed(ctx, feed0.Version, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if feed1.Version != feed0.Version+1 || len(feed1.Keys) != 1 {
		t.Fatalf("feed after create: %+v", feed1)
	}
	sum := sha256.Sum256([]byte(created.Key))
	if feed1.Keys[0].Hash != hex.EncodeToString(sum[:]) {
		t.Fatal("feed hash is not the SHA-256 of the key")
	}
	keys := authenticator(t, feed1)
	p, err := keys.Authenticate(ctx, created.Key, "public-orders", time.Now())
	if err != nil || p.AppID != "billing" || p.KeyPrefix != created.Prefix {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	if _, err := keys.Authenticate(ctx, created.Key, "admin", time.Now()); authnReason(err) != authn.ReasonAPIKeyOutOfScope {
		t.Fatalf("key on another route: %v", err)
	}

	// The list: the key's metadata, nothing secret.
	list, err := ts.operator.ListAPIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := control.APIKeyInfo{Prefix: created.Prefix, App: "billing", Scopes: created.Scopes, Created: created.Created, Expires: created.Expires, Status: control.StatusActive}
	if len(list) != 1 || !infoEqual(list[0], want) {
		t.Fatalf("list %+v, want %+v", list, want)
	}
	raw := ts.operatorGET(t, control.PathAPIKeys)
	secret := created.Key[len(created.Key)-43:]
	for name, s := range map[string]string{"key": created.Key, "secret": secret, "hash": feed1.Keys[0].Hash, "hash field": `"hash"`} {
		if strings.Contains(raw, s) {
			t.Errorf("the list shows the %s: %s", name, raw)
		}
	}

	// Revoke: a new version, the record revoked in the feed, and the key refused.
	info, err := ts.operator.RevokeAPIKey(ctx, created.Prefix)
	if err != nil || info.Status != control.StatusRevoked || info.App != "billing" {
		t.Fatalf("RevokeAPIKey = %+v, %v", info, err)
	}
	feed2, err := gw.APIKeyFeed(ctx, feed1.Version, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if feed2.Version != feed1.Version+1 || len(feed2.Keys) != 1 || !feed2.Keys[0].Revoked {
		t.Fatalf("feed after revoke: %+v", feed2)
	}
	if _, err := authenticator(t, feed2).Authenticate(ctx, created.Key, "public-orders", time.Now()); authnReason(err) != authn.ReasonAPIKeyRevoked {
		t.Fatalf("revoked key: %v", err)
	}
	// Revoking again changes nothing; an unknown prefix is a 404.
	if info, err := ts.operator.RevokeAPIKey(ctx, created.Prefix); err != nil || info.Status != control.StatusRevoked {
		t.Fatalf("second revoke: %+v, %v", info, err)
	}
	if v, _ := ts.Store().APIKeysVersion(ctx); v != feed2.Version {
		t.Fatalf("second revoke moved the version to %d", v)
	}
	if _, err := ts.operator.RevokeAPIKey(ctx, "aaaaaaaa"); apiCode(err) != "not_found" {
		t.Fatalf("revoke unknown: %v", err)
	}

	// Audited, with the prefix and never the key.
	var kinds []string
	for _, e := range events.Events() {
		if !strings.HasPrefix(e.Type, "apikey.") {
			continue
		}
		kinds = append(kinds, e.Type+":"+e.Decision+":"+e.Reason)
		for k, v := range e.Fields {
			if strings.Contains(v, secret) {
				t.Errorf("audit field %s holds the key", k)
			}
		}
		if e.Actor != "spiffe://example.org/user/admin" {
			t.Errorf("audit actor %q", e.Actor)
		}
	}
	if want := []string{"apikey.create:allow:", "apikey.revoke:allow:", "apikey.revoke:allow:", "apikey.revoke:deny:not_found"}; !slices.Equal(kinds, want) {
		t.Fatalf("audit events %v, want %v", kinds, want)
	}
}

func apiStatus(err error) int {
	var ae *control.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func infoEqual(a, b control.APIKeyInfo) bool {
	return a.Prefix == b.Prefix && a.App == b.App && slices.Equal(a.Scopes, b.Scopes) &&
		a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) && a.Status == b.Status
}

// operatorGET fetches path with the operator credential and returns the raw body.
func (ts *testServer) operatorGET(t *testing.T, path string) string {
	t.Helper()
	body, err := ts.operator.Raw(context.Background(), http.MethodGet, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestAPIKeyEndpointsAuthorization: only gateways read the feed, and a
// gateway cannot act as an operator.
func TestAPIKeyEndpointsAuthorization(t *testing.T) {
	events := &audit.Recorder{}
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = events })
	ctx := context.Background()
	svc := ts.client(t, ts.source(t, "orders").Current().TLSCertificate())
	gw := ts.gatewayClient(t, "edge")

	for name, c := range map[string]*control.Client{"workload": svc, "operator": ts.operator} {
		if _, err := c.APIKeyFeed(ctx, -1, 0); apiCode(err) != "not_gateway" || apiStatus(err) != http.StatusForbidden {
			t.Errorf("%s reads the feed: %v", name, err)
		}
	}
	if _, err := ts.anon.APIKeyFeed(ctx, -1, 0); apiCode(err) != "no_credential" {
		t.Errorf("anonymous feed: %v", err)
	}
	for name, c := range map[string]*control.Client{"gateway": gw, "workload": svc} {
		if _, err := c.CreateAPIKey(ctx, "billing", []string{"*"}, 0); apiCode(err) != "not_operator" {
			t.Errorf("%s creates a key: %v", name, err)
		}
		if _, err := c.ListAPIKeys(ctx); apiCode(err) != "not_operator" {
			t.Errorf("%s lists keys: %v", name, err)
		}
		if _, err := c.RevokeAPIKey(ctx, "aaaaaaaa"); apiCode(err) != "not_operator" {
			t.Errorf("%s revokes a key: %v", name, err)
		}
	}
	if v, _ := ts.Store().APIKeysVersion(ctx); v != 0 {
		t.Fatalf("refused calls moved the version to %d", v)
	}
	denied := 0
	for _, e := range events.Events() {
		if e.Type == "control.gateway" && e.Decision == "deny" && e.Reason == "not_gateway" {
			denied++
		}
	}
	if denied != 2 {
		t.Fatalf("%d feed refusals audited, want 2", denied)
	}
}

// TestAPIKeyFeedWakes: a waiting gateway hears of a change within a second,
// whether this server made it or another one sharing the store did.
func TestAPIKeyFeedWakes(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	gw := ts.gatewayClient(t, "edge")
	for _, via := range []string{"api", "store"} {
		t.Run(via, func(t *testing.T) {
			cur, err := gw.APIKeyFeed(ctx, -1, 0)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				feed control.APIKeyFeed
				at   time.Time
				err  error
			}
			done := make(chan result, 1)
			go func() {
				f, err := gw.APIKeyFeed(ctx, cur.Version, 30*time.Second)
				done <- result{f, time.Now(), err}
			}()
			time.Sleep(500 * time.Millisecond)
			select {
			case r := <-done:
				t.Fatalf("long poll answered before any change: %+v %v", r.feed, r.err)
			default:
			}
			changed := time.Now()
			if via == "api" {
				_, err = ts.operator.CreateAPIKey(ctx, "billing", []string{"*"}, 0)
			} else {
				_, rec, nerr := authn.NewAPIKey("billing", []string{"*"}, time.Time{})
				err = errors.Join(nerr, ts.Store().CreateAPIKey(ctx, rec, "another server"))
			}
			if err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-done:
				if r.err != nil || r.feed.Version != cur.Version+1 || len(r.feed.Keys) != len(cur.Keys)+1 {
					t.Fatalf("long poll: %+v, %v", r.feed, r.err)
				}
				if d := r.at.Sub(changed); d > time.Second {
					t.Fatalf("long poll woke %s after the change", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("long poll did not wake on a change")
			}
		})
	}
	// A poll that times out answers with the current state.
	cur, err := gw.APIKeyFeed(ctx, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	same, err := gw.APIKeyFeed(ctx, cur.Version, 300*time.Millisecond)
	if err != nil || same.Version != cur.Version || len(same.Keys) != len(cur.Keys) || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("timed-out poll after %s: %+v, %v", time.Since(start), same, err)
	}
	for _, q := range []string{"?after=x", "?after=-2", "?wait=forever", "?wait=61s", "?wait=-1s"} {
		if _, err := gw.Raw(ctx, http.MethodGet, control.PathAPIKeyFeed+q, nil); apiCode(err) != "bad_query" {
			t.Errorf("feed%s: %v", q, err)
		}
	}
}

func TestFollowAPIKeys(t *testing.T) {
	ts := startServer(t, nil)
	gw := ts.gatewayClient(t, "edge")
	type update struct {
		version int64
		recs    []authn.APIKeyRecord
	}
	updates := make(chan update, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- gw.FollowAPIKeys(ctx, func(v int64, recs []authn.APIKeyRecord) { updates <- update{v, recs} })
	}()
	next := func() update {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-time.After(5 * time.Second):
			t.Fatal("no update from FollowAPIKeys")
			return update{}
		}
	}
	if u := next(); u.version != 0 || len(u.recs) != 0 {
		t.Fatalf("first update %+v", u)
	}
	created, err := ts.operator.CreateAPIKey(context.Background(), "mobile", []string{"*"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u := next()
	if u.version != 1 || len(u.recs) != 1 || u.recs[0].Prefix != created.Prefix || u.recs[0].Revoked {
		t.Fatalf("update after create %+v", u)
	}
	if _, err := ts.operator.RevokeAPIKey(context.Background(), created.Prefix); err != nil {
		t.Fatal(err)
	}
	if u := next(); u.version != 2 || len(u.recs) != 1 || !u.recs[0].Revoked {
		t.Fatalf("update after revoke %+v", u)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("FollowAPIKeys after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FollowAPIKeys did not return after cancel")
	}

	// A credential that is not a gateway's cannot become one by retrying.
	svc := ts.client(t, ts.source(t, "orders").Current().TLSCertificate())
	err = svc.FollowAPIKeys(context.Background(), func(int64, []authn.APIKeyRecord) { t.Error("update for a workload") })
	if apiCode(err) != "not_gateway" {
		t.Fatalf("FollowAPIKeys as a workload: %v", err)
	}
}

// TestAPIKeyBadInput: every malformed create or revoke is a 400 with a code,
// and nothing is stored.
func TestAPIKeyBadInput(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		app    string
		routes []string
		ttl    string
		code   string
	}{
		{"no app", "", []string{"orders"}, "", "bad_app"},
		{"uppercase app", "Billing", []string{"orders"}, "", "bad_app"},
		{"dotted app", "billing.prod", []string{"orders"}, "", "bad_app"},
		{"app with space", "bill ing", []string{"orders"}, "", "bad_app"},
		{"long app", strings.Repeat("a", 64), []string{"orders"}, "", "bad_app"},
		{"no routes", "billing", nil, "", "bad_routes"},
		{"empty route", "billing", []string{""}, "", "bad_routes"},
		{"bad route", "billing", []string{"Orders/v1"}, "", "bad_routes"},
		{"star and more", "billing", []string{"*", "orders"}, "", "bad_routes"},
		{"ttl garbage", "billing", []string{"orders"}, "a month", "bad_ttl"},
		{"ttl zero", "billing", []string{"orders"}, "0s", "bad_ttl"},
		{"ttl negative", "billing", []string{"orders"}, "-1h", "bad_ttl"},
		{"ttl over a year", "billing", []string{"orders"}, "8761h", "bad_ttl"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ts.operator.Raw(ctx, http.MethodPost, control.PathAPIKeys, control.APIKeyRequest{App: tt.app, Routes: tt.routes, TTL: tt.ttl})
			var ae *control.APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code() != tt.code {
				t.Fatalf("got %v, want 400 %s", err, tt.code)
			}
		})
	}
	for _, prefix := range []string{"", "short", "ABCDEFGH", "abcdefg1", "abcdefghi", "wak_abcd"} {
		if _, err := ts.operator.RevokeAPIKey(ctx, prefix); apiCode(err) != "bad_prefix" {
			t.Errorf("revoke %q: %v", prefix, err)
		}
	}
	if _, err := ts.operator.Raw(ctx, http.MethodPost, control.PathAPIKeys, map[string]any{"app": "billing", "routes": []string{"*"}, "admin": true}); apiCode(err) != "bad_json" {
		t.Errorf("unknown field: %v", err)
	}
	keys, err := ts.operator.ListAPIKeys(ctx)
	if err != nil || len(keys) != 0 {
		t.Fatalf("bad input stored keys: %v %v", keys, err)
	}
	if v, _ := ts.Store().APIKeysVersion(ctx); v != 0 {
		t.Fatalf("bad input moved the version to %d", v)
	}
	// The boundaries are accepted.
	if _, err := ts.operator.CreateAPIKey(ctx, "a", []string{"*"}, control.MaxAPIKeyTTL); err != nil {
		t.Fatalf("one-year key: %v", err)
	}
}

// TestAPIKeyNeverLogged: the plaintext key appears in no log line, even at
// debug level.
func TestAPIKeyNeverLogged(t *testing.T) {
	var logs syncBuffer
	ts := startServer(t, func(c *control.ServerConfig) {
		c.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	created, err := ts.operator.CreateAPIKey(context.Background(), "billing", []string{"*"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.operator.RevokeAPIKey(context.Background(), created.Prefix); err != nil {
		t.Fatal(err)
	}
	text := logs.String()
	if !strings.Contains(text, "apikey.create") || !strings.Contains(text, created.Prefix) {
		t.Fatalf("the log does not show the creation; the test would prove nothing:\n%s", text)
	}
	if strings.Contains(text, created.Key[len(created.Key)-43:]) {
		t.Fatal("the API key's secret is in the log")
	}
}
