package resource

import (
	"slices"
	"testing"
)

func TestSecretPolicyConcernsTheOwnersOfItsPaths(t *testing.T) {
	for _, tt := range []struct {
		paths []string
		want  []string
	}{
		{[]string{"orders/db", "orders/api/*"}, []string{"orders", "orders"}},
		{[]string{"orders/db", "catalog/**"}, []string{"orders", "catalog"}},
		{[]string{"orders/db", "*/db"}, nil},
		{[]string{"**"}, nil},
	} {
		o := &Object{Kind: KindSecretPolicy, Spec: &SecretPolicySpec{Readers: []string{"svc/orders"}, Paths: tt.paths}}
		if got := Concerns(o); !slices.Equal(got, tt.want) {
			t.Errorf("Concerns(paths %v) = %v, want %v", tt.paths, got, tt.want)
		}
	}
}

func TestSecretPolicyNotSentToProxies(t *testing.T) {
	objs, err := Parse("t.yaml", []byte(`apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: ["127.0.0.1:1"]}
---
apiVersion: ward/v1
kind: SecretPolicy
metadata: {name: orders-secrets}
spec: {readers: [svc/orders], paths: ["orders/**"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(objs); err != nil {
		t.Fatal(err)
	}
	for _, part := range [][]Object{ForSidecar(objs, "orders"), ForGateway(objs, "edge")} {
		for _, o := range part {
			if o.Kind == KindSecretPolicy {
				t.Fatal("a proxy's part of the set holds a SecretPolicy")
			}
		}
	}
}
