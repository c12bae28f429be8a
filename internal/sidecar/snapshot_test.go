package sidecar_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/sidecar"
)

// fromSnapshot makes a sidecar take its configuration from a control plane
// snapshot instead of the resource file.
func fromSnapshot(version int64, yaml string) func(*sidecar.Config) {
	return func(c *sidecar.Config) {
		c.ConfigFile = ""
		c.Initial = &sidecar.Snapshot{Origin: fmt.Sprintf("server version %d", version), Version: version, Data: []byte(yaml)}
	}
}

// startTwoFromSnapshots is startTwo with both sidecars on snapshots.
func startTwoFromSnapshots(t *testing.T) (ts *twoServices, ordersAddr, catalogAddr string) {
	t.Helper()
	m := newMesh(t)
	ordersAddr, catalogAddr = freeAddr(t), freeAddr(t)
	initial := fromSnapshot(1, meshYAML(ordersAddr, catalogAddr))
	ts = &twoServices{m: m}
	ts.orders = m.sidecarWith("orders", ordersAddr, newRecorder(t, nil), nil, initial)
	ts.catalog = m.sidecarWith("catalog", catalogAddr, newRecorder(t, nil), nil, initial)
	return ts, ordersAddr, catalogAddr
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

// TestApplySnapshot: a control plane snapshot changes decisions as soon as
// Apply returns; bad snapshots are refused with their error and the
// running decisions stay; each attempt is in the audit trail; identical
// data changes nothing.
func TestApplySnapshot(t *testing.T) {
	ts, ordersAddr, catalogAddr := startTwoFromSnapshots(t)
	c := ts.catalog.outbound()
	sc := ts.orders.sc
	expect := func(when string, getWant, postWant int) {
		t.Helper()
		if status, _, _ := get(t, c, "GET", "http://orders/orders/1", nil); status != getWant {
			t.Errorf("%s: GET = %d, want %d", when, status, getWant)
		}
		if status, _, _ := get(t, c, "POST", "http://orders/orders/1", nil); status != postWant {
			t.Errorf("%s: POST = %d, want %d", when, status, postWant)
		}
	}
	expect("initial snapshot", 200, 403)
	if v := sc.ConfigVersion(); v != 1 {
		t.Fatalf("ConfigVersion = %d, want 1", v)
	}

	postOnly := strings.Replace(meshYAML(ordersAddr, catalogAddr), "methods: [GET]", "methods: [POST]", 1)
	if err := sc.Apply(sidecar.Snapshot{Origin: "server version 2", Version: 2, Data: []byte(postOnly)}); err != nil {
		t.Fatal(err)
	}
	expect("after Apply", 403, 200) // no waiting: the swap is done when Apply returns
	if v := sc.ConfigVersion(); v != 2 {
		t.Fatalf("ConfigVersion = %d, want 2", v)
	}
	evs := reloadEvents(ts.orders.events)
	if len(evs) != 1 {
		t.Fatalf("reload events = %+v, want one", evs)
	}
	if e := evs[0]; e.Decision != "allow" || e.Fields["changes"] != "~AccessPolicy/orders-callers" || e.Fields["version"] != "2" ||
		e.Fields["previous_version"] != "1" || e.Fields["origin"] != "server version 2" || e.Subject != "spiffe://example.org/svc/orders" {
		t.Errorf("applied event = %+v", e)
	}

	bad := []struct {
		name, yaml, want string
	}{
		{"bad YAML", "apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [1, 2]\n", "server version 3:"},
		{"policy for a missing service", meshYAML(ordersAddr, catalogAddr) + "---\napiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: nowhere\n  rules: [{from: [svc/a]}]\n", "server version 3:"},
		{"CEL that does not compile", strings.Replace(postOnly, `paths: ["/orders/*", "/health"]`, "paths: [\"/orders/*\"]\n      when: 'peer.id ==='", 1), "server version 3:"},
	}
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := sc.Apply(sidecar.Snapshot{Origin: "server version 3", Version: 3, Data: []byte(tc.yaml)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply = %v, want an error naming %q", err, tc.want)
			}
			expect("after a refused snapshot", 403, 200)
			if v := sc.ConfigVersion(); v != 2 {
				t.Errorf("ConfigVersion = %d, want 2 still", v)
			}
			evs := reloadEvents(ts.orders.events)
			if len(evs) != 2+i {
				t.Fatalf("reload events = %d, want %d", len(evs), 2+i)
			}
			if e := evs[len(evs)-1]; e.Decision != "deny" || e.Reason != "invalid_config" || e.Fields["error"] != err.Error() || e.Fields["version"] != "3" {
				t.Errorf("refused event = %+v", e)
			}
		})
	}

	n := len(reloadEvents(ts.orders.events))
	if err := sc.Apply(sidecar.Snapshot{Origin: "server version 4", Version: 4, Data: []byte(postOnly)}); err != nil {
		t.Fatalf("identical data: %v", err)
	}
	if got := len(reloadEvents(ts.orders.events)); got != n {
		t.Errorf("identical data emitted %d events", got-n)
	}
	if v := sc.ConfigVersion(); v != 4 {
		t.Errorf("ConfigVersion after identical data = %d, want 4", v)
	}
	expect("after identical data", 403, 200)

	// And back: what was denied is allowed again.
	if err := sc.Apply(sidecar.Snapshot{Origin: "server version 5", Version: 5, Data: []byte(meshYAML(ordersAddr, catalogAddr))}); err != nil {
		t.Fatal(err)
	}
	expect("after Apply back", 200, 403)
}

// TestApplyConcurrently: Applies race each other and requests; the last
// one to finish is the one running.
func TestApplyConcurrently(t *testing.T) {
	ts, ordersAddr, catalogAddr := startTwoFromSnapshots(t)
	c := ts.catalog.outbound()
	getOnly := meshYAML(ordersAddr, catalogAddr)
	postOnly := strings.Replace(getOnly, "methods: [GET]", "methods: [POST]", 1)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if status, _, _ := get(t, c, "GET", "http://orders/orders/1", nil); status != 200 && status != 403 {
				t.Errorf("GET during Applies = %d", status)
			}
		}
	}()
	var appliers sync.WaitGroup
	for g := range 4 {
		appliers.Add(1)
		go func() {
			defer appliers.Done()
			for i := range 25 {
				data := getOnly
				if (g+i)%2 == 0 {
					data = postOnly
				}
				if err := ts.orders.sc.Apply(sidecar.Snapshot{Version: int64(2 + g*100 + i), Data: []byte(data)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	appliers.Wait()
	close(stop)
	wg.Wait()
	if err := ts.orders.sc.Apply(sidecar.Snapshot{Version: 1000, Data: []byte(postOnly)}); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := get(t, c, "POST", "http://orders/orders/1", nil); status != 200 {
		t.Errorf("POST after the last Apply = %d, want 200", status)
	}
	if v := ts.orders.sc.ConfigVersion(); v != 1000 {
		t.Errorf("ConfigVersion = %d, want 1000", v)
	}
	for _, e := range reloadEvents(ts.orders.events) {
		if e.Decision != "allow" || e.Fields["changes"] != "~AccessPolicy/orders-callers" {
			t.Errorf("event = %+v, want only real changes recorded", e)
		}
	}
}

// TestApplyRefusedWithConfigFile: a sidecar that follows a resource file
// does not also take snapshots (two sources of truth would fight).
func TestApplyRefusedWithConfigFile(t *testing.T) {
	ts := startTwo(t)
	err := ts.orders.sc.Apply(sidecar.Snapshot{Version: 7, Data: []byte("apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [\"127.0.0.1:1\"]}\n")})
	if err == nil || !strings.Contains(err.Error(), "mesh.yaml") {
		t.Fatalf("Apply = %v, want a refusal naming the file", err)
	}
	if v := ts.orders.sc.ConfigVersion(); v != 0 {
		t.Errorf("ConfigVersion = %d, want 0", v)
	}
	if status, _, _ := get(t, ts.catalog.outbound(), "GET", "http://orders/orders/1", nil); status != 200 {
		t.Errorf("GET = %d, want the file's decision", status)
	}
}

// TestNewChecksConfigSource: exactly one of ConfigFile and Initial, and a
// bad Initial fails New with its error.
func TestNewChecksConfigSource(t *testing.T) {
	m := newMesh(t)
	m.writeConfig(meshYAML(freeAddr(t), freeAddr(t)))
	src := m.source("orders")
	app := newRecorder(t, nil)
	good := &sidecar.Snapshot{Origin: "server version 1", Version: 1, Data: []byte(meshYAML(freeAddr(t), freeAddr(t)))}
	for _, tc := range []struct {
		name    string
		file    string
		initial *sidecar.Snapshot
		want    string
	}{
		{"both", m.config, good, "exactly one"},
		{"neither", "", nil, "no configuration"},
		{"invalid initial", "", &sidecar.Snapshot{Origin: "server version 9", Version: 9,
			Data: []byte("apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: nowhere\n  rules: [{from: [svc/a]}]\n")}, "server version 9:"},
		{"initial without this service", "", &sidecar.Snapshot{Origin: "server version 9", Version: 9,
			Data: []byte("apiVersion: ward/v1\nkind: Service\nmetadata: {name: other}\nspec: {endpoints: [\"127.0.0.1:1\"]}\n")}, `server version 9 declares no Service named "orders"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := sidecar.New(sidecar.Config{
				Service: "orders", TrustDomain: td, Listen: "127.0.0.1:0", App: app.addr,
				ConfigFile: tc.file, Initial: tc.initial, Source: src, Log: quiet(),
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
			if sc != nil {
				t.Fatal("New returned a sidecar with its error")
			}
		})
	}
}
