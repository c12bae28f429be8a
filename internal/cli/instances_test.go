package cli

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
)

// TestInstancesCommand: an instance registered with orders' SVID is
// listed by `ward instances` (table and JSON, all or one service) and as a
// comment under `ward get service`; a bad -o is refused.
func TestInstancesCommand(t *testing.T) {
	srv, dir := startServer(t)
	svc := "apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {}\n"
	file := filepath.Join(t.TempDir(), "svc.yaml")
	if err := os.WriteFile(file, []byte(svc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ward(t, "--data-dir", dir, "apply", "-f", file); err != nil {
		t.Fatal(err)
	}
	src := controltest.Enroll(t, srv, spiffeid.RequireFromSegments(srv.CA.Bundle().TrustDomain, "svc", "orders"))
	c, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	in, err := c.RegisterInstance(t.Context(), control.InstanceRegistration{Service: "orders", Address: "127.0.0.1:9443", Labels: map[string]string{"zone": "a", "version": "v2"}})
	if err != nil {
		t.Fatal(err)
	}

	out, _, err := ward(t, "--data-dir", dir, "instances")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SERVICE", "orders", in.ID, "127.0.0.1:9443", " ok ", "version=v2,zone=a", in.Serial} {
		if !strings.Contains(out, want) {
			t.Errorf("ward instances lacks %q:\n%s", want, out)
		}
	}
	out, _, err = ward(t, "--data-dir", dir, "instances", "orders", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list []control.Instance
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].ID != in.ID {
		t.Fatalf("ward instances orders -o json: %v\n%s", err, out)
	}
	out, _, err = ward(t, "--data-dir", dir, "instances", "catalog", "-o", "json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("instances of a service with none: %v %q", err, out)
	}
	out, _, err = ward(t, "--data-dir", dir, "get", "service", "orders")
	if err != nil || !strings.Contains(out, "#   orders 127.0.0.1:9443 (ok") {
		t.Errorf("ward get service orders: %v\n%s", err, out)
	}
	if _, _, err := ward(t, "--data-dir", dir, "instances", "-o", "yaml"); err == nil {
		t.Error("-o yaml accepted")
	}
}
