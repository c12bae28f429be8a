package control_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
)

const secretValue = "s3cr3t-Value-42"

const ordersSecrets = `apiVersion: ward/v1
kind: SecretPolicy
metadata: {name: orders-secrets}
spec:
  readers: [svc/orders]
  paths: ["orders/**"]
`

// startVault runs a server recording its events, with the orders and
// catalog teams' services and orders/db/password stored.
func startVault(t *testing.T, extra ...string) (*testServer, *audit.Recorder) {
	t.Helper()
	rec := &audit.Recorder{}
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = rec })
	if _, err := ts.operator.Apply(t.Context(), files(append([]string{teams}, extra...)...)); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.operator.PutSecret(t.Context(), "orders/db/password", []byte(secretValue), false); err != nil {
		t.Fatal(err)
	}
	return ts, rec
}

// secretEvents returns the events of type typ, and fails the test if any
// event holds the secret value.
func secretEvents(t *testing.T, rec *audit.Recorder, typ string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, e := range rec.Events() {
		text := strings.Join([]string{e.Subject, e.Actor, e.Reason, e.Result}, " ")
		for _, f := range e.Fields {
			text += " " + f
		}
		if strings.Contains(text, secretValue) {
			t.Fatalf("event %s holds the secret value", e.Type)
		}
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func wantRefused(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	if apiStatus(err) != status || apiCode(err) != code {
		t.Fatalf("%s: %v, want %d %s", what, err, status, code)
	}
}

func TestSecretReadDefaultDeny(t *testing.T) {
	ts, rec := startVault(t)
	orders := ts.svcClient(t, "orders")
	sec, err := orders.GetSecret(t.Context(), "orders/db/password", 0)
	if sec != nil {
		t.Fatal("a secret was released without a SecretPolicy")
	}
	wantRefused(t, "read without a policy", err, http.StatusForbidden, "secret_denied")
	// Operators, admins included, read only what a policy grants them.
	_, err = ts.operator.GetSecret(t.Context(), "orders/db/password", 0)
	wantRefused(t, "admin read without a policy", err, http.StatusForbidden, "secret_denied")
	ev := secretEvents(t, rec, "secret.read")
	if len(ev) != 2 || ev[0].Decision != "deny" || ev[0].Reason != "secret_denied" || ev[0].Actor != "spiffe://example.org/svc/orders" || ev[0].Subject != "orders/db/password" {
		t.Fatalf("read events = %+v, want two denials, the first of svc/orders", ev)
	}
}

func TestSecretPolicyGrantsReadToItsReadersOnly(t *testing.T) {
	ts, rec := startVault(t, ordersSecrets)
	if _, err := ts.operator.PutSecret(t.Context(), "catalog/key", []byte("catalog"), false); err != nil {
		t.Fatal(err)
	}
	orders := ts.svcClient(t, "orders")
	sec, err := orders.GetSecret(t.Context(), "orders/db/password", 0)
	if err != nil || string(sec.Value) != secretValue || sec.Version.Version != 1 {
		t.Fatalf("orders reads its secret: %+v, %v", sec, err)
	}
	_, err = orders.GetSecret(t.Context(), "catalog/key", 0)
	wantRefused(t, "orders reads catalog's secret", err, http.StatusForbidden, "secret_denied")
	_, err = ts.svcClient(t, "catalog").GetSecret(t.Context(), "orders/db/password", 0)
	wantRefused(t, "catalog reads orders' secret", err, http.StatusForbidden, "secret_denied")
	// A denied identity learns nothing of what exists.
	_, err = ts.svcClient(t, "catalog").GetSecret(t.Context(), "orders/none", 0)
	wantRefused(t, "catalog probes a missing secret", err, http.StatusForbidden, "secret_denied")
	_, err = orders.GetSecret(t.Context(), "orders/none", 0)
	wantRefused(t, "orders reads a missing secret", err, http.StatusNotFound, "not_found")
	ev := secretEvents(t, rec, "secret.read")
	if len(ev) != 5 || ev[0].Decision != "allow" || ev[0].Fields["policy"] != "orders-secrets" || ev[0].Fields["version"] != "1" {
		t.Fatalf("read events = %+v, want an allow by orders-secrets first, then four denials", ev)
	}
}

func TestRevokedIdentityRefusedSecret(t *testing.T) {
	ts, rec := startVault(t, ordersSecrets)
	orders := ts.svcClient(t, "orders")
	if _, err := orders.GetSecret(t.Context(), "orders/db/password", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.operator.Revoke(t.Context(), control.RevokeRequest{ID: "spiffe://example.org/svc/orders", Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	sec, err := orders.GetSecret(t.Context(), "orders/db/password", 0)
	if sec != nil {
		t.Fatal("a revoked identity got the secret")
	}
	wantRefused(t, "read with a revoked SVID", err, http.StatusUnauthorized, "revoked")
	ev := secretEvents(t, rec, "secret.read")
	if last := ev[len(ev)-1]; last.Decision != "deny" || last.Reason != "revoked" {
		t.Fatalf("last read event = %+v, want a denial for revoked", last)
	}
	_, err = ts.anon.GetSecret(t.Context(), "orders/db/password", 0)
	wantRefused(t, "read without a credential", err, http.StatusUnauthorized, "no_credential")
}

func TestDeveloperManagesOnlyTheirServicesSecrets(t *testing.T) {
	ts, rec := startVault(t)
	dev := ts.operatorClient(t, "olivia", control.RoleDeveloper, "orders")
	ctx := t.Context()
	if _, err := dev.PutSecret(ctx, "orders/api/key", []byte("k1"), false); err != nil {
		t.Fatalf("developer writes under their service: %v", err)
	}
	if _, err := dev.PutSecret(ctx, "orders/api/key", []byte("k2"), true); err != nil {
		t.Fatalf("developer rotates under their service: %v", err)
	}
	_, err := dev.PutSecret(ctx, "catalog/api/key", []byte("k"), false)
	wantRefused(t, "developer writes another team's secret", err, http.StatusForbidden, "not_owner")
	if _, err := ts.operator.PutSecret(ctx, "catalog/db", []byte("c"), false); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, "developer deletes another team's secret", dev.DeleteSecret(ctx, "catalog/db"), http.StatusForbidden, "not_owner")
	_, err = ts.operatorClient(t, "audrey", control.RoleAuditor).PutSecret(ctx, "orders/x", []byte("a"), false)
	wantRefused(t, "auditor writes a secret", err, http.StatusForbidden, "role_forbids")
	list, err := ts.operator.ListSecrets(ctx, "catalog/")
	if err != nil || len(list.Secrets) != 1 || list.Secrets[0].Latest != 1 || list.Secrets[0].DeletedAt != nil {
		t.Fatalf("catalog's secrets after the refusals: %+v, %v", list, err)
	}
	// SecretPolicies follow the same ownership as other resources.
	_, err = dev.Apply(ctx, files(strings.ReplaceAll(ordersSecrets, "orders/**", "catalog/**")))
	wantRefused(t, "developer grants reads of another team's secrets", err, http.StatusForbidden, "not_owner")
	_, err = dev.Apply(ctx, files(strings.ReplaceAll(ordersSecrets, "orders/**", "*/db")))
	wantRefused(t, "developer writes a policy over every service", err, http.StatusForbidden, "role_forbids")
	if _, err := dev.Apply(ctx, files(ordersSecrets)); err != nil {
		t.Fatalf("developer grants reads of their own secrets: %v", err)
	}
	if ev := secretEvents(t, rec, "secret.write"); len(ev) < 4 || ev[len(ev)-1].Actor != "spiffe://example.org/user/admin" {
		t.Fatalf("write events = %+v", ev)
	}
	var denied int
	for _, e := range append(secretEvents(t, rec, "secret.write"), secretEvents(t, rec, "secret.delete")...) {
		if e.Decision == "deny" && e.Reason == "not_owner" {
			denied++
		}
	}
	if denied != 2 {
		t.Fatalf("not_owner denials audited = %d, want 2", denied)
	}
}

func TestSecretBadInputChangesNothing(t *testing.T) {
	ts, _ := startVault(t, ordersSecrets)
	ctx := t.Context()
	for _, p := range []string{"Orders/x", "orders/x y", "orders/-x", "orders/" + strings.Repeat("a", 64), "orders/x;y"} {
		if _, err := ts.operator.PutSecret(ctx, p, []byte("v"), false); err == nil {
			t.Errorf("the client sent put %q", p)
		}
		_, err := ts.operator.Raw(ctx, http.MethodPut, control.PathSecrets+"/"+strings.ReplaceAll(p, " ", "%20"), nil)
		wantRefused(t, "put "+p, err, http.StatusBadRequest, "bad_path")
	}
	for _, p := range []string{"orders/../catalog/x", "orders//x", "orders/./x", "orders/x/"} {
		if _, err := ts.operator.PutSecret(ctx, p, []byte("v"), false); err == nil {
			t.Errorf("the client sent put %q", p)
		}
		// Sent as is, the server refuses it before the mux would clean
		// the path and redirect the client to another secret.
		for _, m := range []string{http.MethodPut, http.MethodDelete} {
			_, err := ts.operator.Raw(ctx, m, control.PathSecrets+"/"+p, nil)
			wantRefused(t, m+" "+p, err, http.StatusBadRequest, "bad_path")
		}
		_, err := ts.svcClient(t, "orders").Raw(ctx, http.MethodGet, control.PathSecret+p, nil)
		wantRefused(t, "read "+p, err, http.StatusBadRequest, "bad_path")
	}
	_, err := ts.operator.PutSecret(ctx, "orders/big", make([]byte, 64<<10+1), false)
	wantRefused(t, "oversized value", err, http.StatusRequestEntityTooLarge, "too_large")
	_, err = ts.operator.PutSecret(ctx, "orders/empty", nil, false)
	wantRefused(t, "empty value", err, http.StatusBadRequest, "empty_value")
	_, err = ts.operator.PutSecret(ctx, "orders/new", []byte("v"), true)
	wantRefused(t, "rotate of a missing secret", err, http.StatusNotFound, "not_found")
	list, err := ts.operator.ListSecrets(ctx, "")
	if err != nil || len(list.Secrets) != 1 || list.Secrets[0].Path != "orders/db/password" {
		t.Fatalf("secrets after bad input: %+v, %v", list, err)
	}
	_, err = ts.operator.Raw(ctx, http.MethodGet, control.PathSecrets+"?prefix=../x", nil)
	wantRefused(t, "list with a bad prefix", err, http.StatusBadRequest, "bad_path")
	_, err = ts.svcClient(t, "orders").GetSecret(ctx, "orders/db/password?version=x", 0)
	if err == nil {
		t.Fatal("a read of a path with '?' succeeded")
	}
	_, err = ts.operator.Raw(ctx, http.MethodGet, control.PathSecret+"orders/db/password?version=-1", nil)
	wantRefused(t, "negative version", err, http.StatusBadRequest, "bad_version")
}

func TestListAndVersionsNeverHoldValues(t *testing.T) {
	ts, _ := startVault(t)
	if _, err := ts.operator.PutSecret(t.Context(), "orders/db/password", []byte(secretValue+"2"), true); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{control.PathSecrets, control.PathSecretVersions + "orders/db/password", control.PathResources, control.PathHistory} {
		body, err := ts.operator.Raw(t.Context(), http.MethodGet, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(body, secretValue) || strings.Contains(body, base64.StdEncoding.EncodeToString([]byte(secretValue))[:12]) {
			t.Fatalf("GET %s holds the value: %s", p, body)
		}
	}
	vs, err := ts.operator.SecretVersions(t.Context(), "orders/db/password")
	if err != nil || len(vs.Versions) != 2 || vs.Versions[0].CreatedBy != "spiffe://example.org/user/admin" {
		t.Fatalf("versions = %+v, %v", vs, err)
	}
}

// TestVaultSealedStartAndUnseal: after a KEK rotation the server's own key
// no longer opens the vault, so a restart leaves it sealed while the rest
// of the server runs; then only status and unseal answer, and the new key
// unseals it with every secret intact.
func TestVaultSealedStartAndUnseal(t *testing.T) {
	rec := &audit.Recorder{}
	dir := filepath.Join(t.TempDir(), "data")
	srv, stop := controltest.StartStoppable(t, func(c *control.ServerConfig) { c.DataDir, c.Events = dir, rec })
	ts := &testServer{Server: srv, dir: dir, bundle: srv.CA.Bundle()}
	ts.reloadOperator(t)
	ctx := t.Context()
	if _, err := ts.operator.Apply(ctx, files(teams, ordersSecrets)); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.operator.PutSecret(ctx, "orders/db/password", []byte(secretValue), false); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	newKEK := base64.StdEncoding.EncodeToString(key)
	_, err := ts.operatorClient(t, "dana", control.RoleDeveloper, "orders").RotateKEK(ctx, newKEK)
	wantRefused(t, "developer rotates the KEK", err, http.StatusForbidden, "role_forbids")
	if got, err := ts.operator.RotateKEK(ctx, newKEK); err != nil || got.Rewrapped != 1 {
		t.Fatalf("rotate KEK = %+v, %v", got, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	srv2 := controltest.Start(t, func(c *control.ServerConfig) { c.DataDir, c.TrustDomain = dir, "" })
	ts2 := &testServer{Server: srv2, dir: dir, bundle: srv2.CA.Bundle()}
	ts2.reloadOperator(t)
	if st, err := ts2.operator.VaultStatus(ctx); err != nil || !st.Sealed {
		t.Fatalf("status after restart = %+v, %v; want sealed", st, err)
	}
	orders := ts2.svcClient(t, "orders") // the CA works while the vault is sealed
	_, err = orders.GetSecret(ctx, "orders/db/password", 0)
	wantRefused(t, "read while sealed", err, http.StatusServiceUnavailable, "vault_sealed")
	_, err = ts2.operator.ListSecrets(ctx, "")
	wantRefused(t, "list while sealed", err, http.StatusServiceUnavailable, "vault_sealed")
	_, err = ts2.operator.PutSecret(ctx, "orders/x", []byte("v"), false)
	wantRefused(t, "put while sealed", err, http.StatusServiceUnavailable, "vault_sealed")
	_, err = ts2.operator.Unseal(ctx, base64.StdEncoding.EncodeToString(make([]byte, 32)))
	wantRefused(t, "unseal with a wrong KEK", err, http.StatusForbidden, "wrong_kek")
	_, err = ts2.operator.Unseal(ctx, "not base64!")
	wantRefused(t, "unseal with garbage", err, http.StatusBadRequest, "bad_kek")
	_, err = ts2.operatorClient(t, "dev2", control.RoleDeveloper, "orders").Unseal(ctx, newKEK)
	wantRefused(t, "developer unseals", err, http.StatusForbidden, "role_forbids")
	if st, err := ts2.operator.Unseal(ctx, newKEK); err != nil || st.Sealed {
		t.Fatalf("unseal with the new KEK = %+v, %v", st, err)
	}
	sec, err := orders.GetSecret(ctx, "orders/db/password", 0)
	if err != nil || string(sec.Value) != secretValue {
		t.Fatalf("read after unseal: %v", err)
	}
}

// failingReads is a sink that cannot record secret reads.
type failingReads struct{ audit.Recorder }

func (f *failingReads) Emit(ctx context.Context, e audit.Event) error {
	if e.Type == "secret.read" {
		return errors.New("disk full")
	}
	return f.Recorder.Emit(ctx, e)
}

// TestSecretReadNotReleasedWhenAuditFails: a read the audit log cannot
// record releases nothing (invariant 6).
func TestSecretReadNotReleasedWhenAuditFails(t *testing.T) {
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = &failingReads{} })
	if _, err := ts.operator.Apply(t.Context(), files(teams, ordersSecrets)); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.operator.PutSecret(t.Context(), "orders/db/password", []byte(secretValue), false); err != nil {
		t.Fatal(err)
	}
	sec, err := ts.svcClient(t, "orders").GetSecret(t.Context(), "orders/db/password", 0)
	if sec != nil {
		t.Fatal("a read that could not be audited released the value")
	}
	wantRefused(t, "read while the audit log fails", err, http.StatusServiceUnavailable, "audit_unavailable")
}
