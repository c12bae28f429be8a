package proxy

import "testing"

func TestSourceNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":                "192.0.2.7",
		"::ffff:192.0.2.7":         "192.0.2.7",
		"2001:db8:1:2:aaaa::1":     "2001:db8:1:2::/64",
		"2001:db8:1:2:bbbb::99":    "2001:db8:1:2::/64",
		"fe80::1%eth0":             "fe80::/64",
		"not an address":           "not an address",
		"2001:db8:1:3:aaaa::1":     "2001:db8:1:3::/64",
		"2001:0db8:0001:0002::abc": "2001:db8:1:2::/64",
	} {
		if got := SourceNetwork(in); got != want {
			t.Errorf("SourceNetwork(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSourceCapHoldsPerNetwork: a source gets at most its cap of
// concurrent slots, whatever address of its network it uses; another
// source is not affected, and a released slot can be taken again.
func TestSourceCapHoldsPerNetwork(t *testing.T) {
	c := NewSourceCap(3)
	var releases []func()
	for i, ip := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"} {
		rel, ok := c.Acquire(ip)
		if !ok {
			t.Fatalf("slot %d of 3 refused", i+1)
		}
		releases = append(releases, rel)
	}
	if _, ok := c.Acquire("2001:db8::4"); ok {
		t.Fatal("a fourth slot for the same /64 was granted")
	}
	rel, ok := c.Acquire("192.0.2.1")
	if !ok {
		t.Fatal("another source was refused")
	}
	rel()
	releases[0]()
	releases[0]() // twice: still one slot given back
	if _, ok := c.Acquire("2001:db8::5"); !ok {
		t.Fatal("a released slot was not given back")
	}
	if _, ok := c.Acquire("2001:db8::6"); ok {
		t.Fatal("releasing one slot twice gave back two")
	}
}
