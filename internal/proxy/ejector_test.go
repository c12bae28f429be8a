package proxy

import (
	"testing"
	"time"
)

// holdPicks picks n times; requests to the hosts in slow stay outstanding
// (their leases are returned), the others finish at once.
func holdPicks(t *testing.T, e *Ejector, n int, slow map[string]bool) (map[string]int, []Lease) {
	t.Helper()
	got := map[string]int{}
	var held []Lease
	for range n {
		l, err := e.Pick()
		if err != nil {
			t.Fatal(err)
		}
		got[l.Host]++
		if slow[l.Host] {
			held = append(held, l)
			continue
		}
		e.Done(l, Succeeded)
	}
	return got, held
}

func TestEjectorLeastOutstanding(t *testing.T) {
	e := NewEjector([]string{"a", "b", "c"}, EjectorConfig{})
	got, held := holdPicks(t, e, 3000, map[string]bool{"b": true})
	// b's requests never finish: once a few are outstanding, b loses
	// every draw it is in.
	if got["b"] > 10 || got["a"] < 1000 || got["c"] < 1000 {
		t.Fatalf("slow host b got %d of 3000 (a %d, c %d)", got["b"], got["a"], got["c"])
	}
	for _, l := range held {
		e.Done(l, Succeeded)
	}
	// b caught up: it is picked again.
	if got, _ := holdPicks(t, e, 300, nil); got["b"] < 50 {
		t.Fatalf("b after catching up: %v", got)
	}
}

func TestEjectorEjectedGetsNone(t *testing.T) {
	clk := newFakeClock()
	e := NewEjector([]string{"a", "b", "c"}, EjectorConfig{Failures: 1, BaseEjection: time.Second, Now: clk.Now})
	report(e, "b", false)
	if got, _ := holdPicks(t, e, 1000, nil); got["b"] != 0 || got["a"] < 300 || got["c"] < 300 {
		t.Fatalf("with b ejected: %v", got)
	}
}

func TestEjectorHostsChange(t *testing.T) {
	e := NewEjector([]string{"a", "b"}, EjectorConfig{})
	// Steady load: 20 requests in flight on each.
	_, held := holdPicks(t, e, 40, map[string]bool{"a": true, "b": true})
	e.SetHosts([]string{"a", "b", "c"})
	// A new host has nothing outstanding: it gets the next requests.
	got, held2 := holdPicks(t, e, 20, map[string]bool{"a": true, "b": true, "c": true})
	if got["c"] < 10 {
		t.Fatalf("new host c got %d of the next 20: %v", got["c"], got)
	}
	// b is removed: no new request goes to it, and the leases it had are
	// given back without harm.
	e.SetHosts([]string{"a", "c"})
	if got, _ := holdPicks(t, e, 500, nil); got["b"] != 0 {
		t.Fatalf("removed host b still picked: %v", got)
	}
	for _, l := range append(held, held2...) {
		e.Done(l, Failed)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ep := range e.hosts {
		if ep.outstanding != 0 {
			t.Fatalf("%s: %d outstanding after every lease was given back", ep.name, ep.outstanding)
		}
	}
}

func TestEjectorPickOther(t *testing.T) {
	clk := newFakeClock()
	e := NewEjector([]string{"a", "b", "c"}, EjectorConfig{Failures: 1, BaseEjection: time.Second, Now: clk.Now})
	for range 300 {
		l, err := e.PickOther("a")
		if err != nil || l.Host == "a" {
			t.Fatalf("a retry went back to a: %q %v", l.Host, err)
		}
		e.Done(l, Abandoned)
	}
	report(e, "b", false)
	report(e, "c", false)
	// Only a is in: the retry goes there rather than nowhere.
	l, err := e.PickOther("a")
	if err != nil || l.Host != "a" {
		t.Fatalf("with only a in: %q %v", l.Host, err)
	}
	e.Done(l, Succeeded)
	e.mu.Lock()
	defer e.mu.Unlock()
	if a := e.byName["a"]; !a.until.IsZero() || a.outstanding != 0 {
		t.Fatalf("a after PickOther: ejected until %v, %d outstanding", a.until, a.outstanding)
	}
}
