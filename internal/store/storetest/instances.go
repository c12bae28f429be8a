package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/store"
)

func newInstance(id, service, addr, serial string, renewed time.Time) store.Instance {
	return store.Instance{
		ID: id, Service: service, Address: addr, SPIFFEID: "spiffe://example.org/svc/" + service, Serial: serial,
		Labels: map[string]string{"version": "v1"}, Started: renewed.Add(-time.Minute), Renewed: renewed, Expires: renewed.Add(10 * time.Second),
	}
}

func wantInstances(t *testing.T, s store.Store, service string, ids ...string) []store.Instance {
	t.Helper()
	got, err := s.ListInstances(t.Context(), service)
	must(t, err)
	var gotIDs []string
	for _, in := range got {
		gotIDs = append(gotIDs, in.ID)
	}
	if !reflect.DeepEqual(gotIDs, ids) {
		t.Fatalf("instances of %q: %v, want %v", service, gotIDs, ids)
	}
	return got
}

func testInstances(t *testing.T, s store.Store) {
	ctx := t.Context()
	version := func() int64 {
		v, err := s.InstancesVersion(ctx)
		must(t, err)
		return v
	}
	put := func(in store.Instance) {
		t.Helper()
		_, err := s.PutInstance(ctx, in)
		must(t, err)
	}
	if v := version(); v != 0 {
		t.Fatalf("an empty store has instances version %d", v)
	}
	a := newInstance("a", "orders", "127.0.0.2:8443", "s1", t0)
	v, err := s.PutInstance(ctx, a)
	must(t, err)
	if v != 1 || version() != 1 {
		t.Fatalf("first registration: version %d (%d), want 1", v, version())
	}
	put(newInstance("b", "orders", "127.0.0.3:8443", "s2", t0))
	put(newInstance("c", "catalog", "127.0.0.4:8443", "s3", t0.Add(time.Hour)))
	got := wantInstances(t, s, "orders", "a", "b")
	if !reflect.DeepEqual(got[0], a) {
		t.Errorf("stored %+v, read back %+v", a, got[0])
	}
	wantInstances(t, s, "", "c", "a", "b") // by service, then address
	if _, err := s.PutInstance(ctx, store.Instance{ID: "x"}); err == nil {
		t.Error("an instance without service, address or identity was stored")
	}

	// The same sidecar registering again under a new id replaces its entry.
	before := version()
	put(newInstance("a2", "orders", "127.0.0.2:8443", "s4", t0))
	wantInstances(t, s, "orders", "a2", "b")
	if version() <= before {
		t.Error("a registration did not raise the version")
	}

	// Renewals move the expiry and not the version; unknown ids come back.
	before = version()
	missing, err := s.RenewInstances(ctx, []string{"a2", "nope"}, t0.Add(time.Hour), t0.Add(time.Hour+10*time.Second))
	must(t, err)
	if !reflect.DeepEqual(missing, []string{"nope"}) {
		t.Errorf("missing after renewal: %v", missing)
	}
	if version() != before {
		t.Error("a renewal changed the version")
	}

	// Expiry removes what was not renewed (b), and only that.
	gone, err := s.ExpireInstances(ctx, t0.Add(30*time.Minute))
	must(t, err)
	if len(gone) != 1 || gone[0].ID != "b" {
		t.Fatalf("expired %+v, want b", gone)
	}
	wantInstances(t, s, "orders", "a2")
	before = version()
	if gone, err := s.ExpireInstances(ctx, t0.Add(30*time.Minute)); err != nil || len(gone) != 0 || version() != before {
		t.Errorf("an expiry that removes nothing: %v %v, version %d -> %d", gone, err, before, version())
	}

	// Revocation by serial.
	gone, err = s.DeleteInstancesBySerial(ctx, []string{"s3", "unknown"})
	must(t, err)
	if len(gone) != 1 || gone[0].ID != "c" {
		t.Fatalf("revocation removed %+v, want c", gone)
	}
	wantInstances(t, s, "catalog")

	// Deregistration.
	in, err := s.DeleteInstance(ctx, "a2")
	must(t, err)
	if in.Address != "127.0.0.2:8443" {
		t.Errorf("deregistered %+v", in)
	}
	before = version()
	if _, err := s.DeleteInstance(ctx, "a2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deregistering twice: %v, want ErrNotFound", err)
	}
	if version() != before {
		t.Error("a failed deregistration changed the version")
	}
	wantInstances(t, s, "")
}
