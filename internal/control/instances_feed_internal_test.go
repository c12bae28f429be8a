package control

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/store"
)

func TestCursorCarriesBothVersions(t *testing.T) {
	for _, tt := range []struct{ res, inst int64 }{{0, 0}, {1, 0}, {0, 1}, {7, 123456}, {1 << 20, 1<<32 - 1}} {
		r, i := splitCursor(makeCursor(tt.res, tt.inst))
		if r != tt.res || i != tt.inst {
			t.Errorf("cursor of (%d, %d) splits into (%d, %d)", tt.res, tt.inst, r, i)
		}
	}
	if makeCursor(2, 0) <= makeCursor(1, 1<<32-1) {
		t.Error("a newer resource version must give a larger cursor whatever the instances version")
	}
	if r, i := splitCursor(-1); r != -1 || i != -1 {
		t.Errorf("no cursor splits into (%d, %d), want (-1, -1)", r, i)
	}
	// A snapshot saved before cursors existed resumes from its version:
	// read as a cursor its resource part is 0, so the next poll answers.
	if r, _ := splitCursor(SnapshotResponse{Version: 9}.Next()); r != 0 {
		t.Errorf("an old saved version reads as resource version %d", r)
	}
}

const reachSet = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {}
---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {endpoints: ["10.0.0.1:443"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: billing}
spec: {}
---
apiVersion: ward/v1
kind: Service
metadata: {name: audit}
spec: {}
---
apiVersion: ward/v1
kind: Service
metadata: {name: lonely}
spec: {}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders}
spec: {target: orders, rules: [{from: [svc/catalog]}]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: billing}
spec: {target: billing, rules: [{from: ["svc/*"]}]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: audit}
spec: {target: audit, mode: dry-run, rules: [{from: [gateway/edge]}]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: catalog}
spec: {target: catalog, rules: [{from: [gateway/edge]}]}
---
apiVersion: ward/v1
kind: Route
metadata: {name: shop}
spec: {pathPrefix: /, service: catalog, auth: {apiKey: none, user: anonymous}}
`

func parseReachSet(t *testing.T) []resource.Object {
	t.Helper()
	objs, err := resource.ParseSet("reach.yaml", []byte(reachSet))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestReachableFromFollowsPolicies(t *testing.T) {
	objs := parseReachSet(t)
	for _, tt := range []struct {
		id   string
		want []string
	}{
		// catalog is named by orders' policy, matches billing's svc/*, and
		// audit is in dry-run (every caller gets through).
		{"/svc/catalog", []string{"audit", "billing", "orders"}},
		{"/svc/orders", []string{"audit", "billing"}},
		{"/gateway/edge", []string{"audit", "catalog"}},
		{"/svc/a/b", []string{"audit"}}, // svc/* matches one segment only
	} {
		if got := reachableFrom(objs, tt.id); !slices.Equal(got, tt.want) {
			t.Errorf("%s reaches %v, want %v", tt.id, got, tt.want)
		}
	}
}

// fakeInstances is just enough of store.Instances for nextLiveSet; the
// stores themselves are tested by storetest on SQLite and PostgreSQL.
type fakeInstances struct {
	store.Instances
	version int64
	list    []store.Instance
}

func (f *fakeInstances) InstancesVersion(context.Context) (int64, error) { return f.version, nil }
func (f *fakeInstances) ListInstances(context.Context, string) ([]store.Instance, error) {
	return f.list, nil
}

func TestLiveSetLabelsOnlyChangedServices(t *testing.T) {
	ctx := t.Context()
	f := &fakeInstances{version: 1, list: []store.Instance{{Service: "orders", Address: "127.0.0.2:1"}, {Service: "billing", Address: "127.0.0.3:1"}}}
	s1, err := nextLiveSet(ctx, f, nil)
	if err != nil || s1 == nil {
		t.Fatal(s1, err)
	}
	if s, _ := nextLiveSet(ctx, f, s1); s != nil {
		t.Fatal("the same version read again must give no new set")
	}
	// orders gains an instance; billing is unchanged; then billing loses all.
	f.version, f.list = 2, []store.Instance{{Service: "orders", Address: "127.0.0.4:1"}, {Service: "orders", Address: "127.0.0.2:1"}, {Service: "billing", Address: "127.0.0.3:1"}}
	s2, _ := nextLiveSet(ctx, f, s1)
	if got := s2.services["orders"]; got.changed != 2 || !slices.Equal(got.addrs, []string{"127.0.0.2:1", "127.0.0.4:1"}) {
		t.Errorf("orders after a registration: %+v", got)
	}
	if got := s2.services["billing"].changed; got != 1 {
		t.Errorf("billing did not change but is labelled version %d", got)
	}
	f.version, f.list = 3, f.list[:2]
	s3, _ := nextLiveSet(ctx, f, s2)
	if got := s3.services["billing"]; got.changed != 3 || len(got.addrs) != 0 {
		t.Errorf("billing without instances must stay as a tombstone of version 3: %+v", got)
	}
	if s3.liveCount() != 2 {
		t.Errorf("live count %d, want 2", s3.liveCount())
	}

	set := &resourceSet{version: 5, objs: parseReachSet(t)}
	catalog := set.partFor("svc", "catalog")
	if !catalog.touched(s3, 2) || catalog.touched(s3, 3) {
		t.Error("catalog reaches billing, changed at version 3: touched after 2, not after 3")
	}
	edge := set.partFor("gateway", "edge")
	if edge.touched(s3, 0) {
		t.Error("the gateway routes only to catalog, which has no registered instance")
	}
	if set.partFor("svc", "catalog") != catalog {
		t.Error("a proxy's part is computed once per version")
	}
}

func TestWithInstancesMergesWithoutChangingTheCache(t *testing.T) {
	set := &resourceSet{version: 1, objs: parseReachSet(t)}
	live := &liveSet{version: 4, services: map[string]liveService{
		"orders":  {changed: 4, addrs: []string{"127.0.0.2:9", "127.0.0.3:9"}},
		"catalog": {changed: 4, addrs: []string{"10.0.0.1:443", "127.0.0.5:9"}},
		"lonely":  {changed: 4, addrs: []string{"127.0.0.6:9"}},
	}}
	part := set.partFor("svc", "catalog")
	before := string(resource.Marshal(part.objs))
	got := string(resource.Marshal(part.withInstances(live)))
	if string(resource.Marshal(part.objs)) != before {
		t.Fatal("merging changed the cached part")
	}
	if !strings.Contains(got, "127.0.0.2:9") || !strings.Contains(got, "127.0.0.3:9") {
		t.Errorf("orders' instances missing from catalog's part:\n%s", got)
	}
	if strings.Contains(got, "127.0.0.6:9") || strings.Contains(got, "127.0.0.5:9") {
		t.Errorf("instances of services catalog may not call were sent:\n%s", got)
	}
	edge := string(resource.Marshal(set.partFor("gateway", "edge").withInstances(live)))
	if strings.Count(edge, "10.0.0.1:443") != 1 || !strings.Contains(edge, "127.0.0.5:9") {
		t.Errorf("the gateway's catalog: static endpoint once, then the registered one:\n%s", edge)
	}
	if _, err := resource.ParseSet("merged", []byte(edge)); err != nil {
		t.Errorf("a merged part must stay valid: %v", err)
	}
}
