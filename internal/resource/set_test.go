package resource

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// loadSet parses testdata/set/mesh.yaml: every kind, with CEL conditions,
// dry-run mode, a tcp Service, rate limits and issuers.
func loadSet(t testing.TB) []Object {
	t.Helper()
	objs, err := LoadFile("testdata/set/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(objs); err != nil {
		t.Fatal(err)
	}
	return objs
}

func mustParse(t testing.TB, src string) []Object {
	t.Helper()
	objs, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	return objs
}

// equalSets reports whether a and b hold equal objects (Origin aside), in
// any order, and explains the first difference.
func equalSets(a, b []Object) (bool, string) {
	if len(a) != len(b) {
		return false, fmt.Sprintf("%d objects, want %d", len(b), len(a))
	}
	byKey := map[string]Object{}
	for _, o := range b {
		o.Origin = Origin{}
		byKey[Key(&o)] = o
	}
	for _, o := range a {
		o.Origin = Origin{}
		got, ok := byKey[Key(&o)]
		if !ok {
			return false, "missing " + Key(&o)
		}
		if !reflect.DeepEqual(o, got) {
			return false, fmt.Sprintf("%s: got %#v, want %#v", Key(&o), got.Spec, o.Spec)
		}
	}
	return true, ""
}

func keys(objs []Object) string {
	var ks []string
	for i := range objs {
		ks = append(ks, Key(&objs[i]))
	}
	return strings.Join(ks, " ")
}

func TestMarshalRoundTrip(t *testing.T) {
	full := loadSet(t)
	tests := []struct {
		name string
		objs []Object
	}{
		{"realistic set", full},
		{"one service", mustParse(t, "apiVersion: ward/v1\nkind: Service\nmetadata: {name: a}\nspec: {endpoints: [\"h:1\"]}\n")},
		{"policy without rules", mustParse(t, "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec: {target: a}\n")},
		{"empty issuers", mustParse(t, "apiVersion: ward/v1\nkind: Route\nmetadata: {name: r}\nspec: {pathPrefix: /, service: a, auth: {issuers: []}}\n")},
		{"awkward strings", mustParse(t, "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: a\n  rules:\n  - from: [\"*\"]\n    when: \"  true\\n\\t&& 'x' != \\\"#: y\\\"  \\n\"\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := Marshal(tt.objs)
			again, err := Parse("g.yaml", out)
			if err != nil {
				t.Fatalf("Parse(Marshal): %v\n%s", err, out)
			}
			if ok, why := equalSets(tt.objs, again); !ok {
				t.Errorf("round trip: %s\n%s", why, out)
			}
			if out2 := Marshal(again); !bytes.Equal(out, out2) {
				t.Errorf("Marshal not idempotent:\n%s\n---- second:\n%s", out, out2)
			}
			if got := Changes(tt.objs, again); len(got) != 0 {
				t.Errorf("Changes after a round trip: %q", got)
			}
		})
	}
}

// TestMarshalGolden holds the canonical form of the realistic set: order,
// indentation, defaults.
func TestMarshalGolden(t *testing.T) {
	got := Marshal(loadSet(t))
	const golden = "testdata/set/mesh.golden"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestMarshal(t *testing.T) {
	if out := Marshal(nil); len(out) != 0 {
		t.Errorf("Marshal(nil) = %q", out)
	}
	if out := Marshal([]Object{}); len(out) != 0 {
		t.Errorf("Marshal(empty) = %q", out)
	}
	// Built in code, without defaults: written as Parse would return it,
	// and the object is left alone.
	built := []Object{
		{APIVersion: APIVersion, Kind: KindAccessPolicy, Metadata: Metadata{Name: "p"}, Spec: &AccessPolicySpec{Target: "b", Rules: []Rule{{From: []string{"*"}}}}},
		{APIVersion: APIVersion, Kind: KindService, Metadata: Metadata{Name: "b"}, Spec: &ServiceSpec{Endpoints: []string{"h:1"}}},
		{APIVersion: APIVersion, Kind: KindService, Metadata: Metadata{Name: "a"}, Spec: &ServiceSpec{Endpoints: []string{"h:1"}}},
	}
	want := `apiVersion: ward/v1
kind: Service
metadata:
  name: a
spec:
  protocol: http
  endpoints:
    - h:1
---
apiVersion: ward/v1
kind: Service
metadata:
  name: b
spec:
  protocol: http
  endpoints:
    - h:1
---
apiVersion: ward/v1
kind: AccessPolicy
metadata:
  name: p
spec:
  target: b
  mode: enforce
  rules:
    - from:
        - '*'
      methods:
        - '*'
      paths:
        - /*
`
	if got := string(Marshal(built)); got != want {
		t.Errorf("Marshal =\n%s\nwant\n%s", got, want)
	}
	if p := built[0].Spec.(*AccessPolicySpec); p.Mode != "" || p.Rules[0].Methods != nil {
		t.Errorf("Marshal modified its input: %+v", p)
	}
}

func TestMergeRemove(t *testing.T) {
	const svc = "apiVersion: ward/v1\nkind: Service\nmetadata: {name: %s}\nspec: {endpoints: [\"%s\"]}\n"
	a, b, b2, c := mustParse(t, fmt.Sprintf(svc, "a", "h:1")), mustParse(t, fmt.Sprintf(svc, "b", "h:1")),
		mustParse(t, fmt.Sprintf(svc, "b", "h:2")), mustParse(t, fmt.Sprintf(svc, "c", "h:1"))
	pol := mustParse(t, "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: b}\nspec: {target: b}\n")
	base := slices.Concat(a, b)

	tests := []struct {
		name     string
		objs     []Object
		want     string
		endpoint string // of Service/b in the result
	}{
		{"add", c, "Service/a Service/b Service/c", "h:1"},
		{"replace", b2, "Service/a Service/b", "h:2"},
		{"same name, other kind", pol, "Service/a Service/b AccessPolicy/b", "h:1"},
		{"replace and add", slices.Concat(c, b2), "Service/a Service/b Service/c", "h:2"},
		{"nothing", nil, "Service/a Service/b", "h:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Merge(base, tt.objs)
			if keys(got) != tt.want {
				t.Errorf("Merge = %s, want %s", keys(got), tt.want)
			}
			for _, o := range got {
				if Key(&o) == "Service/b" && o.Spec.(*ServiceSpec).Endpoints[0] != tt.endpoint {
					t.Errorf("Service/b endpoint %s, want %s", o.Spec.(*ServiceSpec).Endpoints[0], tt.endpoint)
				}
			}
			if keys(base) != "Service/a Service/b" || base[1].Spec.(*ServiceSpec).Endpoints[0] != "h:1" {
				t.Errorf("Merge modified base: %s", keys(base))
			}
		})
	}

	for _, tt := range []struct {
		kind, name string
		want       string
		found      bool
	}{
		{KindService, "a", "Service/b", true},
		{KindService, "b", "Service/a", true},
		{KindAccessPolicy, "a", "Service/a Service/b", false},
		{KindService, "z", "Service/a Service/b", false},
	} {
		t.Run("remove "+tt.kind+"/"+tt.name, func(t *testing.T) {
			got, found := Remove(base, tt.kind, tt.name)
			if keys(got) != tt.want || found != tt.found {
				t.Errorf("Remove = %s, %v; want %s, %v", keys(got), found, tt.want, tt.found)
			}
			if keys(base) != "Service/a Service/b" {
				t.Errorf("Remove modified base: %s", keys(base))
			}
		})
	}
}

func TestDiff(t *testing.T) {
	const svc = "apiVersion: ward/v1\nkind: Service\nmetadata: {name: %s}\nspec: {endpoints: [%s]}\n"
	full := loadSet(t)
	orders2 := mustParse(t, fmt.Sprintf(svc, "orders", `"10.0.0.1:8080", "10.0.0.2:8080"`))
	tests := []struct {
		name     string
		old, new []Object
		want     []string // lines the diff must contain
		not      []string // lines it must not contain
	}{
		{"equal", full, full, nil, nil},
		{"equal, other order", full, sorted(full), nil, nil},
		{"both empty", nil, nil, nil, nil},
		{"add", nil, mustParse(t, fmt.Sprintf(svc, "a", `"h:1"`)), []string{
			"--- Service/a", "+++ Service/a", "@@ -0,0 +1,8 @@", "+apiVersion: ward/v1", "+kind: Service", "+  name: a", "+    - h:1",
		}, []string{" apiVersion: ward/v1"}},
		{"remove", mustParse(t, fmt.Sprintf(svc, "a", `"h:1"`)), nil, []string{
			"--- Service/a", "+++ Service/a", "@@ -1,8 +0,0 @@", "-apiVersion: ward/v1", "-  protocol: http", "-    - h:1",
		}, nil},
		{"change", full, Merge(full, orders2), []string{
			"--- Service/orders", "+++ Service/orders", "-    - orders.internal:8080", "+    - 10.0.0.2:8080", "-  port: 15001",
			"     - 10.0.0.1:8080", // context
		}, []string{"--- Service/catalog", " apiVersion: ward/v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := Render(tt.old, tt.new)
			if tt.want == nil {
				if got != "" {
					t.Fatalf("diff = %q, want \"\"", got)
				}
				return
			}
			lines := strings.Split(got, "\n")
			for _, w := range tt.want {
				if !slices.Contains(lines, w) {
					t.Errorf("the diff lacks line %q:\n%s", w, got)
				}
			}
			for _, w := range tt.not {
				if slices.Contains(lines, w) {
					t.Errorf("the diff has line %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestRender checks Render's shortcuts against the plain computation: the
// documents are Marshal's, byte for byte, and the diff is the one made by
// encoding every object on both sides.
func TestRender(t *testing.T) {
	full := loadSet(t)
	orders2 := mustParse(t, "apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [\"10.0.0.9:80\"]}\n")
	removed, _ := Remove(full, "Service", "catalog")
	bare := []Object{{APIVersion: "ward/v1", Kind: "Service", Metadata: Metadata{Name: "orders"}, Spec: &ServiceSpec{Endpoints: []string{"orders.internal:8080"}}}}
	plainDiff := func(old, new []Object) string {
		var b strings.Builder
		for _, o := range sorted(slices.Concat(old, new)) {
			if b.Len() > 0 && strings.Contains(b.String(), "--- "+Key(&o)+"\n") {
				continue
			}
			var a, z []string
			for i := range old {
				if Key(&old[i]) == Key(&o) {
					a = lines(marshalObject(&old[i]))
				}
			}
			for i := range new {
				if Key(&new[i]) == Key(&o) {
					z = lines(marshalObject(&new[i]))
				}
			}
			b.WriteString(unifiedDiff(Key(&o), a, z, 3))
		}
		return b.String()
	}
	for _, tt := range []struct {
		name     string
		old, new []Object
	}{
		{"from nothing", nil, full},
		{"to nothing", full, nil},
		{"unchanged", full, sorted(full)},
		{"one changed", full, Merge(full, orders2)},
		{"one removed", full, removed},
		{"defaults not applied", Merge(full, orders2), bare},
	} {
		t.Run(tt.name, func(t *testing.T) {
			diff, docs := Render(tt.old, tt.new)
			if want := Marshal(tt.new); !bytes.Equal(docs, want) {
				t.Errorf("documents differ from Marshal:\n%s\nwant\n%s", docs, want)
			}
			if want := plainDiff(tt.old, tt.new); diff != want {
				t.Errorf("diff:\n%s\nwant\n%s", diff, want)
			}
		})
	}
}

// TestUnifiedDiff checks hunks against the output of diff -u.
func TestUnifiedDiff(t *testing.T) {
	split := func(s string) []string { return lines([]byte(s)) }
	tests := []struct {
		name string
		a, z string
		want string
	}{
		{"equal", "a\nb\n", "a\nb\n", ""},
		{"one change in the middle", "1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\nX\n6\n7\n8\n9\n",
			"--- L\n+++ L\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+X\n 6\n 7\n 8\n"},
		{"two hunks", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "X\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\nY\n",
			"--- L\n+++ L\n@@ -1,4 +1,4 @@\n-1\n+X\n 2\n 3\n 4\n@@ -9,4 +9,4 @@\n 9\n 10\n 11\n-12\n+Y\n"},
		{"close changes share a hunk", "1\n2\n3\n4\n5\n6\n7\n8\n", "X\n2\n3\n4\n5\n6\n7\nY\n",
			"--- L\n+++ L\n@@ -1,8 +1,8 @@\n-1\n+X\n 2\n 3\n 4\n 5\n 6\n 7\n-8\n+Y\n"},
		{"insert", "a\nb\n", "a\nx\nb\n", "--- L\n+++ L\n@@ -1,2 +1,3 @@\n a\n+x\n b\n"},
		{"no final newline", "a\n", "a", "--- L\n+++ L\n@@ -1 +1 @@\n-a\n+a\n\\ No newline at end of file\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unifiedDiff("L", split(tt.a), split(tt.z), 3); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestConcerns(t *testing.T) {
	full := loadSet(t)
	want := map[string][]string{
		"Service/orders":           {"orders"},
		"Service/db":               {"db"},
		"AccessPolicy/orders":      {"orders"},
		"AccessPolicy/audit-watch": {"audit"},
		"Route/public-catalog":     {"catalog"},
		"Route/orders-api":         {"orders"},
		"Issuer/corp":              nil,
		"Issuer/local":             nil,
	}
	for k, w := range want {
		t.Run(k, func(t *testing.T) {
			i := slices.IndexFunc(full, func(o Object) bool { return Key(&o) == k })
			if i < 0 {
				t.Fatalf("no %s", k)
			}
			if got := Concerns(&full[i]); !slices.Equal(got, w) {
				t.Errorf("Concerns = %q, want %q", got, w)
			}
		})
	}
	if got := Concerns(&Object{Kind: KindService}); got != nil {
		t.Errorf("Concerns(no spec) = %q", got)
	}
}

func TestForSidecar(t *testing.T) {
	const (
		services = `apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {endpoints: ["catalog:80"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: ["orders:80"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: other}
spec: {endpoints: ["other:80"]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: catalog}
spec:
  target: catalog
  rules: [{from: [gateway/edge]}]
`
		ordersPolicy = "---\napiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: %s}\nspec:\n  target: orders\n  mode: %s\n  rules: [{from: [%s], when: 'true'}]\n"
	)
	tests := []struct {
		name     string
		policies string
		want     string
	}{
		{"no policy for orders", "", "Service/catalog Service/orders Service/other AccessPolicy/catalog"},
		{"orders allows svc/catalog", fmt.Sprintf(ordersPolicy, "o", "enforce", "svc/catalog"), "Service/catalog Service/orders Service/other AccessPolicy/catalog"},
		{"orders allows svc/*", fmt.Sprintf(ordersPolicy, "o", "enforce", `"svc/*"`), "Service/catalog Service/orders Service/other AccessPolicy/catalog"},
		{"orders allows *", fmt.Sprintf(ordersPolicy, "o", "enforce", `"*"`), "Service/catalog Service/orders Service/other AccessPolicy/catalog"},
		{"orders allows another caller", fmt.Sprintf(ordersPolicy, "o", "enforce", "svc/other, gateway/*"), "Service/catalog Service/orders Service/other AccessPolicy/catalog"},
		{"orders allows a longer path", fmt.Sprintf(ordersPolicy, "o", "enforce", `"svc/catalog/*"`), "Service/catalog Service/orders Service/other AccessPolicy/catalog"},
		{"orders in dry run", fmt.Sprintf(ordersPolicy, "o", "dry-run", "svc/other"), "Service/catalog Service/orders Service/other AccessPolicy/catalog"},
		{"dry run beside an enforced policy that denies", fmt.Sprintf(ordersPolicy, "o", "dry-run", "svc/other") + fmt.Sprintf(ordersPolicy, "p", "enforce", "svc/other"),
			"Service/catalog Service/orders Service/other AccessPolicy/catalog"},
		{"second enforced policy allows", fmt.Sprintf(ordersPolicy, "o", "enforce", "svc/other") + fmt.Sprintf(ordersPolicy, "p", "enforce", `"*/catalog"`),
			"Service/catalog Service/orders Service/other AccessPolicy/catalog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := mustParse(t, services+tt.policies)
			if err := Validate(objs); err != nil {
				t.Fatal(err)
			}
			got := ForSidecar(objs, "catalog")
			if keys(got) != tt.want {
				t.Errorf("ForSidecar = %s\nwant          %s", keys(got), tt.want)
			}
			if err := Validate(got); err != nil {
				t.Errorf("result does not validate: %v", err)
			}
		})
	}

	// On the realistic set.
	full := loadSet(t)
	for _, tt := range []struct{ service, want string }{
		{"orders", "Service/audit Service/catalog Service/db Service/orders AccessPolicy/orders"},
		{"catalog", "Service/audit Service/catalog Service/db Service/orders AccessPolicy/catalog"},
		{"db", "Service/audit Service/catalog Service/db Service/orders AccessPolicy/db"},
		{"none", "Service/audit Service/catalog Service/db Service/orders"},
	} {
		t.Run("set/"+tt.service, func(t *testing.T) {
			got := ForSidecar(full, tt.service)
			if keys(got) != tt.want {
				t.Errorf("ForSidecar = %s\nwant          %s", keys(got), tt.want)
			}
			if err := Validate(got); err != nil {
				t.Errorf("result does not validate: %v", err)
			}
		})
	}
}

func TestForGateway(t *testing.T) {
	full := loadSet(t)
	noRoutes := slices.DeleteFunc(slices.Clone(full), func(o Object) bool { return o.Kind == KindRoute })
	for _, tt := range []struct {
		name string
		objs []Object
		want string
	}{
		{"realistic set", full, "Service/catalog Service/orders AccessPolicy/catalog AccessPolicy/orders Route/orders-api Route/public-catalog Issuer/corp Issuer/local"},
		{"no routes", noRoutes, "Issuer/corp Issuer/local"},
		{"nothing", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ForGateway(tt.objs, "edge")
			if keys(got) != tt.want {
				t.Errorf("ForGateway = %s\nwant          %s", keys(got), tt.want)
			}
			if err := Validate(got); err != nil {
				t.Errorf("result does not validate: %v", err)
			}
		})
	}
}

// TestParseSetLimits: a set merged from several files may hold more
// documents than one file; Parse keeps the per-file limit.
func TestParseSetLimits(t *testing.T) {
	var sb strings.Builder
	for i := range MaxDocuments + 1 {
		fmt.Fprintf(&sb, "apiVersion: ward/v1\nkind: Service\nmetadata: {name: s%d}\nspec: {endpoints: [\"127.0.0.1:1\"]}\n---\n", i)
	}
	if _, err := Parse("one-file", []byte(sb.String())); err == nil || !strings.Contains(err.Error(), "more than 1000 documents") {
		t.Errorf("Parse of %d documents: %v, want the per-file limit", MaxDocuments+1, err)
	}
	objs, err := ParseSet("version 1", []byte(sb.String()))
	if err != nil || len(objs) != MaxDocuments+1 {
		t.Errorf("ParseSet: %d objects, %v", len(objs), err)
	}
}
