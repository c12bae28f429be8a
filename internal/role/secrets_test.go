package role

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/control"
)

// TestFetchSecretsAllOrNothing (issue 16 item 4): FetchSecrets, what
// `ward run` and the demo's orders app read their secrets with, returns
// every value a SecretPolicy lets the workload read, or, when one is
// refused or missing, an error naming it and no value at all.
func TestFetchSecretsAllOrNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	grp, gctx := errgroup.WithContext(ctx)
	defer func() {
		cancel()
		if err := grp.Wait(); err != nil {
			t.Errorf("server role: %v", err)
		}
	}()
	m := startServer(t, gctx, grp)
	defer m.op.CloseIdleConnections()
	policy := "apiVersion: ward/v1\nkind: SecretPolicy\nmetadata: {name: orders-db}\nspec:\n  readers: [svc/orders]\n  paths: [\"orders/db/*\"]\n"
	if _, err := m.op.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: "secrets.yaml", Data: policy}}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"orders/db/password", "orders/db/user", "catalog/db/password"} {
		if _, err := m.op.PutSecret(ctx, p, []byte("value of "+p), false); err != nil {
			t.Fatal(err)
		}
	}
	w := m.workload(t, ctx, "svc/orders", "run-orders")
	_, client, err := w.Identity(ctx, ServiceID("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()

	sec, err := FetchSecrets(ctx, client, []SecretRef{{"DB_PASSWORD", "orders/db/password"}, {"DB_USER", "orders/db/user"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Values["DB_PASSWORD"]) != "value of orders/db/password" || string(sec.Values["DB_USER"]) != "value of orders/db/user" ||
		sec.Versions["DB_PASSWORD"] != 1 || sec.Versions["DB_USER"] != 1 {
		t.Errorf("got %q %v", sec.Values, sec.Versions)
	}
	sec.Wipe()
	if v := sec.Values["DB_PASSWORD"]; len(v) == 0 || strings.Trim(string(v), "\x00") != "" {
		t.Errorf("Wipe left %q", v)
	}

	for _, c := range []struct {
		ref    SecretRef
		status int
		code   string
	}{
		{SecretRef{"OTHER", "catalog/db/password"}, http.StatusForbidden, "secret_denied"},
		{SecretRef{"MISSING", "orders/db/missing"}, http.StatusNotFound, ""},
	} {
		sec, err := FetchSecrets(ctx, client, []SecretRef{{"DB_PASSWORD", "orders/db/password"}, c.ref})
		var ae *control.APIError
		if sec != nil || !errors.As(err, &ae) || ae.Status != c.status || (c.code != "" && ae.Body.Code != c.code) ||
			!strings.Contains(err.Error(), c.ref.Env+" ("+c.ref.Path+")") {
			t.Errorf("%s: got %v, %v; want no values and %d %s naming it", c.ref.Path, sec, err, c.status, c.code)
		}
	}
	if _, err := ServiceID("Not A Name")(w.Bundle.TrustDomain); err == nil {
		t.Error("ServiceID accepted an invalid service name")
	}
}
