package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/store"
)

// newResourceVersion returns the suite's version n, different in every
// field from the others. Its Version is n.
func newResourceVersion(n int64) store.ResourceVersion {
	changes := []string{fmt.Sprintf("+Service/s%d", n)}
	if n%2 == 0 {
		changes = []string{"~Service/s1", fmt.Sprintf("-Route/r%d", n)}
	}
	return store.ResourceVersion{
		Version:   n,
		CreatedAt: t0.Add(time.Duration(n)*time.Minute + time.Duration(n)*time.Microsecond),
		Author:    fmt.Sprintf("spiffe://test/user/op%d", n),
		Action:    []string{"apply", "delete", "rollback"}[n%3],
		Changes:   changes,
		Diff:      fmt.Sprintf("--- version %d\n+++ version %d\n+  name: s%d\n", n-1, n, n),
		Documents: fmt.Appendf(nil, "apiVersion: ward/v1\nkind: Service\nmetadata:\n  name: s%d\n", n),
	}
}

// putVersion records newResourceVersion(n) on base n-1 and checks that it
// became version n.
func putVersion(t *testing.T, s store.Store, n int64) {
	t.Helper()
	v := newResourceVersion(n)
	v.Version = 0 // the store numbers versions, not the caller
	got, err := s.PutResourceVersion(t.Context(), n-1, v)
	must(t, err)
	if got != n {
		t.Fatalf("PutResourceVersion on base %d = version %d, want %d", n-1, got, n)
	}
}

func wantResourcesVersion(t *testing.T, s store.Store, want int64) {
	t.Helper()
	v, err := s.ResourcesVersion(t.Context())
	must(t, err)
	if v != want {
		t.Fatalf("resources version %d, want %d", v, want)
	}
}

func wantStoredVersion(t *testing.T, s store.Store, want store.ResourceVersion) {
	t.Helper()
	got, err := s.GetResourceVersion(t.Context(), want.Version)
	must(t, err)
	wantEqual(t, fmt.Sprintf("GetResourceVersion(%d)", want.Version), got, want)
}

func wantLatestVersion(t *testing.T, s store.Store, want store.ResourceVersion) {
	t.Helper()
	got, err := s.LatestResourceVersion(t.Context())
	must(t, err)
	wantEqual(t, "LatestResourceVersion", got, want)
}

// wantListed checks that ListResourceVersions(before, limit) lists the
// suite's versions want, in that order, without Documents and Diff.
func wantListed(t *testing.T, s store.Store, before int64, limit int, want ...int64) {
	t.Helper()
	vs, err := s.ListResourceVersions(t.Context(), before, limit)
	must(t, err)
	got := []int64{}
	for _, v := range vs {
		got = append(got, v.Version)
	}
	wantEqual(t, fmt.Sprintf("versions listed before %d, limit %d", before, limit), got, append([]int64{}, want...))
	for i, v := range vs {
		if len(v.Documents) != 0 || v.Diff != "" {
			t.Fatalf("listed version %d has Documents %q and Diff %q, want neither", v.Version, v.Documents, v.Diff)
		}
		w := newResourceVersion(want[i])
		w.Documents, w.Diff = v.Documents, ""
		wantEqual(t, fmt.Sprintf("listed version %d", v.Version), v, w)
	}
}

func testResourceVersions(t *testing.T, s store.Store) {
	ctx := t.Context()
	wantResourcesVersion(t, s, 0)
	_, err := s.LatestResourceVersion(ctx)
	wantErr(t, "LatestResourceVersion(empty store)", err, store.ErrNotFound)
	_, err = s.GetResourceVersion(ctx, 1)
	wantErr(t, "GetResourceVersion(1) of an empty store", err, store.ErrNotFound)
	wantListed(t, s, 0, 0)

	putVersion(t, s, 1)
	wantResourcesVersion(t, s, 1)
	wantStoredVersion(t, s, newResourceVersion(1))
	wantLatestVersion(t, s, newResourceVersion(1))
	_, err = s.GetResourceVersion(ctx, 2)
	wantErr(t, "GetResourceVersion(2)", err, store.ErrNotFound)
	_, err = s.GetResourceVersion(ctx, 0)
	wantErr(t, "GetResourceVersion(0)", err, store.ErrNotFound)
	wantListed(t, s, 0, 0, 1)

	putVersion(t, s, 2)
	putVersion(t, s, 3)

	// A base other than the newest version records nothing.
	for _, base := range []int64{0, 1, 2, 4, 10, -1} {
		other := newResourceVersion(99)
		n, err := s.PutResourceVersion(ctx, base, other)
		wantErr(t, fmt.Sprintf("PutResourceVersion(base %d) with version 3 the newest", base), err, store.ErrConflict)
		if n != 0 {
			t.Fatalf("PutResourceVersion(base %d) failed and returned version %d, want 0", base, n)
		}
	}
	wantResourcesVersion(t, s, 3)
	for n := range int64(3) {
		wantStoredVersion(t, s, newResourceVersion(n+1))
	}
	wantLatestVersion(t, s, newResourceVersion(3))
	for _, n := range []int64{4, 5, 11} {
		_, err = s.GetResourceVersion(ctx, n)
		wantErr(t, fmt.Sprintf("GetResourceVersion(%d) after conflicts", n), err, store.ErrNotFound)
	}
	wantListed(t, s, 0, 0, 3, 2, 1)

	putVersion(t, s, 4)
	putVersion(t, s, 5)
	wantLatestVersion(t, s, newResourceVersion(5))
	for _, tt := range []struct {
		before int64
		limit  int
		want   []int64
	}{
		{0, 0, []int64{5, 4, 3, 2, 1}},
		{-1, -1, []int64{5, 4, 3, 2, 1}}, // <= 0: no bound, 100
		{0, 2, []int64{5, 4}},
		{4, 2, []int64{3, 2}}, // the next page: below the last one listed
		{2, 2, []int64{1}},
		{1, 2, nil},
		{3, 0, []int64{2, 1}},
		{5, 1, []int64{4}},
		{6, 0, []int64{5, 4, 3, 2, 1}},
		{100, 3, []int64{5, 4, 3}},
	} {
		t.Run(fmt.Sprintf("list before %d limit %d", tt.before, tt.limit), func(t *testing.T) {
			wantListed(t, s, tt.before, tt.limit, tt.want...)
		})
	}

	// Without a limit, 100; a larger limit is kept.
	for n := int64(6); n <= 105; n++ {
		putVersion(t, s, n)
	}
	for _, tt := range []struct {
		limit     int
		n, newest int
	}{{0, 100, 105}, {101, 101, 105}, {200, 105, 105}} {
		vs, err := s.ListResourceVersions(ctx, 0, tt.limit)
		must(t, err)
		if len(vs) != tt.n || vs[0].Version != int64(tt.newest) || vs[len(vs)-1].Version != int64(tt.newest-tt.n+1) {
			t.Fatalf("ListResourceVersions(limit %d): %d versions; want %d, %d down to %d", tt.limit, len(vs), tt.n, tt.newest, tt.newest-tt.n+1)
		}
	}
	wantStoredVersion(t, s, newResourceVersion(105))
}

// testConcurrentResourceVersions races changes on one base: exactly one
// records each version, and the versions stay contiguous.
func testConcurrentResourceVersions(t *testing.T, s store.Store) {
	ctx := t.Context()
	author := func(i int) string { return fmt.Sprintf("spiffe://test/user/w%d", i) }

	// All on the same base: one wins, the others conflict.
	const rounds = 3
	for base := range int64(rounds) {
		got := make([]int64, workers)
		errs := parallel(workers, func(i int) error {
			v := newResourceVersion(base + 1)
			v.Author = author(i)
			var err error
			got[i], err = s.PutResourceVersion(ctx, base, v)
			return err
		})
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("base %d: workers %d and %d both recorded a version", base, winner, i)
			case err == nil:
				winner = i
				if got[i] != base+1 {
					t.Fatalf("base %d: PutResourceVersion = version %d, want %d", base, got[i], base+1)
				}
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("base %d: PutResourceVersion: got error %v, want %v", base, err, store.ErrConflict)
			}
		}
		if winner < 0 {
			t.Fatalf("base %d: no worker recorded a version", base)
		}
		want := newResourceVersion(base + 1)
		want.Author = author(winner)
		wantStoredVersion(t, s, want)
		wantResourcesVersion(t, s, base+1)
	}

	// Each on whatever is newest, again after a conflict: every change is
	// recorded once, as one of the versions that follow.
	var mu sync.Mutex
	byAuthor := map[string]int64{}
	must(t, errors.Join(parallel(workers, func(i int) error {
		for range 100 * workers {
			base, err := s.ResourcesVersion(ctx)
			if err != nil {
				return err
			}
			v := newResourceVersion(base + 1)
			v.Author = author(i)
			n, err := s.PutResourceVersion(ctx, base, v)
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			if err != nil {
				return err
			}
			mu.Lock()
			byAuthor[v.Author] = n
			mu.Unlock()
			return nil
		}
		return fmt.Errorf("worker %d: conflicts without end", i)
	})...))
	const total = rounds + workers
	wantResourcesVersion(t, s, total)
	vs, err := s.ListResourceVersions(ctx, 0, 0)
	must(t, err)
	if len(vs) != total {
		t.Fatalf("%d versions listed, want %d", len(vs), total)
	}
	for i, v := range vs {
		if want := int64(total - i); v.Version != want {
			t.Fatalf("version %d listed at %d, want %d: not contiguous", v.Version, i, want)
		}
		if v.Version > rounds && byAuthor[v.Author] != v.Version {
			t.Fatalf("version %d is by %s, whose change was recorded as version %d", v.Version, v.Author, byAuthor[v.Author])
		}
	}
	if len(byAuthor) != workers {
		t.Fatalf("%d workers recorded a change, want %d", len(byAuthor), workers)
	}
}

func wantOperators(t *testing.T, s store.Store, want ...store.Operator) {
	t.Helper()
	got, err := s.ListOperators(t.Context())
	must(t, err)
	if len(got) != 0 || len(want) != 0 {
		wantEqual(t, "operators", got, want)
	}
}

func wantOperator(t *testing.T, s store.Store, want store.Operator) {
	t.Helper()
	got, err := s.GetOperator(t.Context(), want.Name)
	must(t, err)
	wantEqual(t, "operator "+want.Name, got, want)
}

func testOperators(t *testing.T, s store.Store) {
	ctx := t.Context()
	wantOperators(t, s)
	_, err := s.GetOperator(ctx, "alice")
	wantErr(t, "GetOperator of an empty store", err, store.ErrNotFound)

	carol := store.Operator{Name: "carol", Role: "developer", Services: []string{"billing", "orders"}, CreatedBy: "spiffe://test/user/alice", CreatedAt: t0}
	alice := store.Operator{Name: "alice", Role: "admin", Services: []string{}, CreatedBy: "spiffe://test/user/admin", CreatedAt: t0.Add(-time.Hour)}
	bob := store.Operator{Name: "bob", Role: "auditor", Services: []string{}, CreatedBy: "spiffe://test/user/alice", CreatedAt: t0.Add(time.Microsecond)}
	for _, o := range []store.Operator{carol, alice, bob} {
		must(t, s.PutOperator(ctx, o))
	}
	for _, o := range []store.Operator{alice, bob, carol} {
		wantOperator(t, s, o)
	}
	wantOperators(t, s, alice, bob, carol)
	_, err = s.GetOperator(ctx, "dave")
	wantErr(t, "GetOperator(unknown)", err, store.ErrNotFound)

	// The same name replaces every field.
	bob2 := store.Operator{Name: "bob", Role: "developer", Services: []string{"orders"}, CreatedBy: "spiffe://test/user/carol", CreatedAt: t0.Add(time.Hour)}
	must(t, s.PutOperator(ctx, bob2))
	wantOperator(t, s, bob2)
	carol2 := store.Operator{Name: "carol", Role: "auditor", Services: []string{}, CreatedBy: "spiffe://test/user/bob", CreatedAt: t0.Add(2 * time.Hour)}
	must(t, s.PutOperator(ctx, carol2))
	wantOperator(t, s, carol2)
	wantOperators(t, s, alice, bob2, carol2)

	// An unknown role is refused, and replaces nothing.
	for _, o := range []store.Operator{
		{Name: "alice", Role: "root", Services: []string{}, CreatedBy: "spiffe://test/user/x", CreatedAt: t0},
		{Name: "eve", Role: "", Services: []string{}, CreatedBy: "spiffe://test/user/x", CreatedAt: t0},
	} {
		if err := s.PutOperator(ctx, o); err == nil {
			t.Fatalf("PutOperator accepted role %q", o.Role)
		}
	}
	_, err = s.GetOperator(ctx, "eve")
	wantErr(t, "GetOperator of a refused operator", err, store.ErrNotFound)
	wantOperators(t, s, alice, bob2, carol2)
}

// testEmptyResourceSet: deleting the last object records a version whose
// set is empty (nil Documents); the store keeps it, not a NULL refusal.
func testEmptyResourceSet(t *testing.T, s store.Store) {
	ctx := t.Context()
	putVersion(t, s, 1)
	empty := newResourceVersion(2)
	empty.Documents = nil
	v, err := s.PutResourceVersion(ctx, 1, empty)
	if err != nil || v != 2 {
		t.Fatalf("PutResourceVersion(an empty set) = %d, %v; want 2, nil", v, err)
	}
	got, err := s.GetResourceVersion(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Documents) != 0 || got.Author != empty.Author || got.Diff != empty.Diff {
		t.Fatalf("GetResourceVersion(2) = %+v, want the empty set by %s", got, empty.Author)
	}
	wantResourcesVersion(t, s, 2)
}
