package role

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when any goroutine outlives them: a
// role's Run owns every goroutine it starts.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
