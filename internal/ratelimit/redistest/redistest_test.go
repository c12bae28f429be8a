package redistest

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(Wrap(m)) }

func TestAddrServes(t *testing.T) {
	a := Addr(t)
	if err := ping(a); err != nil {
		t.Fatalf("PING %s: %v", a, err)
	}
	if b := Addr(t); b != a {
		t.Fatalf("second Addr = %s, want the same server %s", b, a)
	}
}

func TestStartStop(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("PING %s: %v", s.Addr(), err)
	}
	if s.Addr() == Addr(t) {
		t.Fatal("Start returned the shared server")
	}
	s.Stop()
	if err := ping(s.Addr()); err == nil {
		t.Fatalf("%s still answers after Stop", s.Addr())
	}
	s.Stop() // a second Stop does nothing
}
