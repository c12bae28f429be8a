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
