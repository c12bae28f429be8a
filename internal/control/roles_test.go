package control_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
)

// operatorClient creates operator name with role (and, for a developer,
// the services they own) through the real API, and returns a client that
// presents their credential.
func (ts *testServer) operatorClient(t *testing.T, name, role string, services ...string) *control.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	created, err := ts.operator.CreateOperator(context.Background(), control.OperatorRequest{Name: name, Role: role, Services: services, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(created.Chain), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return ts.client(t, &cert)
}

// teams is two teams' services, the orders team's policy and its public
// Route for any host under /orders.
const teams = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: ["127.0.0.1:9001"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {endpoints: ["127.0.0.1:9002"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: evil}
spec: {endpoints: ["127.0.0.1:9003"]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules: [{from: [gateway/*]}]
---
apiVersion: ward/v1
kind: Route
metadata: {name: orders}
spec:
  pathPrefix: /orders
  service: orders
  auth: {apiKey: required, user: jwt}
`

func route(name, host, prefix, service string) string {
	doc := "apiVersion: ward/v1\nkind: Route\nmetadata: {name: " + name + "}\nspec:\n"
	if host != "" {
		doc += "  host: " + host + "\n"
	}
	return doc + "  pathPrefix: " + prefix + "\n  service: " + service + "\n  auth: {apiKey: none, user: anonymous}\n  forwardCredentials: true\n"
}

func files(docs ...string) control.ApplyRequest {
	return control.ApplyRequest{Files: []control.ResourceFile{{Name: "change.yaml", Data: strings.Join(docs, "---\n")}}}
}

// startTeams runs a server holding teams (version 1).
func startTeams(t *testing.T, extra ...string) *testServer {
	t.Helper()
	ts := startServer(t, nil)
	if _, err := ts.operator.Apply(t.Context(), files(append([]string{teams}, extra...)...)); err != nil {
		t.Fatal(err)
	}
	return ts
}

// refusedNotOwner checks that err is a 403 not_owner naming want and that
// the set is still at version.
func (ts *testServer) refusedNotOwner(t *testing.T, what string, err error, version int64, want ...string) {
	t.Helper()
	if apiStatus(err) != http.StatusForbidden || apiCode(err) != "not_owner" {
		t.Errorf("%s: %v, want 403 not_owner", what, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not name %q", what, err, w)
		}
	}
	cur, rerr := ts.operator.Resources(t.Context(), "", "")
	if rerr != nil || cur.Version != version {
		t.Errorf("%s: the set is at version %d (%v), want %d: the refusal recorded something", what, cur.Version, rerr, version)
	}
}

// TestDeveloperRouteMayNotShadowOtherTeam is issue 12 finding 1: a
// developer who owns only evil may not win, at the gateway, requests that
// another team's Route answers: not with a host Route over an any-host
// one, not with a longer prefix inside theirs, not by any mix of the two.
// Their own space, and space no Route answers, stays theirs to use; admins
// may do anything. Each refusal is audited.
func TestDeveloperRouteMayNotShadowOtherTeam(t *testing.T) {
	ts := startTeams(t)
	ctx := t.Context()
	dev := ts.operatorClient(t, "mallory", control.RoleDeveloper, "evil")
	for _, tt := range []struct{ name, host, prefix string }{
		{"the reproduction: a host Route inside orders' prefix", "localhost", "/orders/1"},
		{"a longer prefix for any host", "", "/orders/1"},
		{"a host Route on the same prefix", "api.example.com", "/orders"},
		{"a host Route on a shorter prefix", "localhost", "/"},
	} {
		_, err := dev.Apply(ctx, files(route("evil", tt.host, tt.prefix, "evil")))
		ts.refusedNotOwner(t, tt.name, err, 1, `Route "orders"`, `service "orders"`)
		_, err = dev.Apply(ctx, control.ApplyRequest{Files: files(route("evil", tt.host, tt.prefix, "evil")).Files, DryRun: true})
		ts.refusedNotOwner(t, tt.name+" (dry run)", err, 1, `Route "orders"`)
	}
	// Space no other team's Route answers is the developer's to use: a
	// Route beside orders', and a catch-all that orders' longer prefix
	// still beats.
	if _, err := dev.Apply(ctx, files(route("evil", "", "/evil", "evil"))); err != nil {
		t.Fatalf("a Route in space nobody answers: %v", err)
	}
	if _, err := dev.Apply(ctx, files(route("evil-all", "", "/", "evil"))); err != nil {
		t.Fatalf("a catch-all below orders' prefix: %v", err)
	}
	// Now orders' developer may not take what evil's catch-all answers.
	ordersDev := ts.operatorClient(t, "olga", control.RoleDeveloper, "orders")
	_, err := ordersDev.Apply(ctx, files(route("orders-v2", "", "/v2", "orders")))
	ts.refusedNotOwner(t, "taking requests from another team's catch-all", err, 3, `Route "evil-all"`, `service "evil"`)

	// An admin may do anything, and a developer may not then undo it by
	// deleting or moving their own Route so that the requests fall back to,
	// or move onto, another team's.
	if _, err := ts.operator.Apply(ctx, files(route("evil-1", "localhost", "/orders/1", "evil"))); err != nil {
		t.Fatalf("an admin's shadowing Route: %v", err)
	}
	_, err = dev.Delete(ctx, control.DeleteRequest{Kind: "Route", Name: "evil-1"})
	ts.refusedNotOwner(t, "deleting a Route whose requests fall back to orders", err, 4, `Route "orders"`)
	_, err = dev.Apply(ctx, files(route("evil-1", "localhost", "/orders/2", "evil")))
	ts.refusedNotOwner(t, "moving a Route within orders' prefix", err, 4, `Route "orders"`)
	// A rollback is checked on what it changes: back to version 1 would
	// give /orders/1 back to orders.
	_, err = dev.Rollback(ctx, control.RollbackRequest{Version: 3})
	ts.refusedNotOwner(t, "rolling back over an admin's Route", err, 4, `Route "orders"`)
	// Changing what their own Route asks of callers moves no request.
	changed := strings.Replace(route("evil-1", "localhost", "/orders/1", "evil"), "forwardCredentials: true", "forwardCredentials: false", 1)
	if _, err := dev.Apply(ctx, files(changed)); err != nil {
		t.Errorf("changing their own Route's auth in place: %v", err)
	}

	// Every refusal is in the audit log with its reason.
	refused := 0
	if _, err := audit.Query(ctx, filepath.Join(ts.dir, control.DirAudit), audit.Filter{Principal: "spiffe://example.org/user/mallory", Reason: "not_owner"}, func(audit.Record) error {
		refused++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if refused != 11 {
		t.Errorf("%d not_owner refusals of mallory audited, want 11", refused)
	}
}

// TestDeveloperMayNotRetargetOthersPolicy is issue 19 item 3: ownership is
// checked on what an object was as well as on what it becomes, so a
// developer who owns catalog may neither move orders' policy or Route to
// catalog nor delete orders' objects.
func TestDeveloperMayNotRetargetOthersPolicy(t *testing.T) {
	ts := startTeams(t)
	ctx := t.Context()
	dev := ts.operatorClient(t, "carl", control.RoleDeveloper, "catalog")
	retarget := "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: orders-callers}\nspec:\n  target: catalog\n  rules: [{from: [svc/evil]}]\n"
	_, err := dev.Apply(ctx, files(retarget))
	ts.refusedNotOwner(t, "retargeting orders' policy to catalog", err, 1, "AccessPolicy/orders-callers", `service "orders"`)
	ordersToCatalog := "apiVersion: ward/v1\nkind: Route\nmetadata: {name: orders}\nspec:\n  pathPrefix: /orders\n  service: catalog\n  auth: {apiKey: required, user: jwt}\n"
	_, err = dev.Apply(ctx, files(ordersToCatalog))
	ts.refusedNotOwner(t, "moving orders' Route to catalog", err, 1, "Route/orders", `service "orders"`)
	for _, kind := range []string{"AccessPolicy/orders-callers", "Route/orders"} {
		k, name, _ := strings.Cut(kind, "/")
		_, err = dev.Delete(ctx, control.DeleteRequest{Kind: k, Name: name})
		ts.refusedNotOwner(t, "deleting "+kind, err, 1, kind, `service "orders"`)
	}
	// The same developer changes catalog's own objects.
	own := "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: catalog-callers}\nspec:\n  target: catalog\n  rules: [{from: [svc/orders]}]\n"
	if resp, err := dev.Apply(ctx, files(own)); err != nil || resp.Version != 2 {
		t.Errorf("a developer's own policy: %+v %v", resp, err)
	}
}

// TestDeveloperIsNotAdmin is issue 19 item 4: a developer is held to the
// services they own and to the resource endpoints; nothing an admin alone
// may do is open to them.
func TestDeveloperIsNotAdmin(t *testing.T) {
	ts := startTeams(t)
	ctx := t.Context()
	dev := ts.operatorClient(t, "dana", control.RoleDeveloper, "catalog")
	othersPolicy := "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: orders-callers}\nspec:\n  target: orders\n  rules: [{from: [svc/catalog]}]\n"
	if _, err := dev.Apply(ctx, files(othersPolicy)); apiCode(err) != "not_owner" {
		t.Errorf("a developer changing another service's policy: %v, want not_owner", err)
	}
	issuer := "apiVersion: ward/v1\nkind: Issuer\nmetadata: {name: corp}\nspec: {issuerURL: \"https://idp.example.com\", audiences: [ward]}\n"
	if _, err := dev.Apply(ctx, files(issuer)); apiCode(err) != "role_forbids" {
		t.Errorf("a developer applying an Issuer: %v, want role_forbids", err)
	}
	for name, call := range map[string]func() error{
		"create a join token": func() error {
			_, err := dev.CreateToken(ctx, "spiffe://example.org/svc/catalog", time.Minute)
			return err
		},
		"create an API key": func() error { _, err := dev.CreateAPIKey(ctx, "x", []string{"*"}, time.Hour); return err },
		"rotate the CA":     func() error { _, err := dev.Rotate(ctx); return err },
		"revoke": func() error {
			_, err := dev.Revoke(ctx, control.RevokeRequest{ID: "spiffe://example.org/svc/orders"})
			return err
		},
		"create an operator": func() error {
			_, err := dev.CreateOperator(ctx, control.OperatorRequest{Name: "eve", Role: control.RoleAdmin})
			return err
		},
	} {
		if err := call(); apiStatus(err) != http.StatusForbidden || apiCode(err) != "role_forbids" {
			t.Errorf("a developer may %s: %v, want 403 role_forbids", name, err)
		}
	}
	if cur, err := ts.operator.Resources(ctx, "", ""); err != nil || cur.Version != 1 {
		t.Errorf("after the developer's refused changes the set is at version %d (%v), want 1", cur.Version, err)
	}
	// Reading is open to them.
	if _, err := dev.Resources(ctx, "", ""); err != nil {
		t.Errorf("a developer reading: %v", err)
	}
}

// TestAuditorMayNotChange: an auditor reads everything and changes
// nothing. The role is refused at the door, before the request is read:
// a malformed or stale change from an auditor says role_forbids, not what
// is wrong with it.
func TestAuditorMayNotChange(t *testing.T) {
	ts := startTeams(t)
	ctx := t.Context()
	aud := ts.operatorClient(t, "ada", control.RoleAuditor)
	if _, err := aud.Resources(ctx, "", ""); err != nil {
		t.Fatalf("an auditor reading: %v", err)
	}
	malformed := files("apiVersion: ward/v1\nkind: Route\nmetadata: {name: x}\nspec: {bogus: 1}\n")
	stale := files(route("mine", "", "/mine", "catalog"))
	stale.BaseVersion = 99
	for name, call := range map[string]func() error{
		"apply a malformed file":     func() error { _, err := aud.Apply(ctx, malformed); return err },
		"apply against a stale base": func() error { _, err := aud.Apply(ctx, stale); return err },
		"apply a dry run": func() error {
			req := files(route("mine", "", "/mine", "catalog"))
			req.DryRun = true
			_, err := aud.Apply(ctx, req)
			return err
		},
		"roll back": func() error { _, err := aud.Rollback(ctx, control.RollbackRequest{Version: 1}); return err },
		"delete a Route": func() error {
			_, err := aud.Delete(ctx, control.DeleteRequest{Kind: "Route", Name: "orders"})
			return err
		},
	} {
		err := call()
		if apiStatus(err) != http.StatusForbidden || apiCode(err) != "role_forbids" || !strings.Contains(err.Error(), "/v1/") {
			t.Errorf("an auditor may %s: %v, want 403 role_forbids naming the endpoint", name, err)
		}
	}
	if cur, err := ts.operator.Resources(ctx, "", ""); err != nil || cur.Version != 1 {
		t.Errorf("after the auditor's refused changes the set is at version %d (%v), want 1", cur.Version, err)
	}
}
