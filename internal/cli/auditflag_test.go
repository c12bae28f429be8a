package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
)

// TestAuditSyncIntervalFlag: --audit-sync-interval takes a positive Go
// duration or "always", defaults to audit.DefaultSyncInterval, and ward
// sidecar and ward gateway refuse anything else naming the flag.
func TestAuditSyncIntervalFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1s", time.Second, true}, {"250ms", 250 * time.Millisecond, true}, {"always", audit.SyncAlways, true},
		{"0", 0, false}, {"0s", 0, false}, {"-1s", 0, false}, {"soon", 0, false}, {"", 0, false}, {"ALWAYS", 0, false},
	} {
		var f syncIntervalFlag
		err := f.Set(tc.in)
		if (err == nil) != tc.ok || (tc.ok && f.duration() != tc.want) {
			t.Errorf("Set(%q) = %v, %v; want %v ok=%v", tc.in, f.duration(), err, tc.want, tc.ok)
		}
	}
	var def syncIntervalFlag
	if def.String() != "1s" || def.duration() != 0 {
		t.Errorf("the default reads %q (%v)", def.String(), def.duration())
	}
	for _, role := range []string{"sidecar", "gateway"} {
		for _, bad := range []string{"0", "-5s", "soon"} {
			_, _, err := runWard(t, role, "--audit-sync-interval", bad)
			if err == nil || !strings.Contains(err.Error(), "--audit-sync-interval") {
				t.Errorf("ward %s --audit-sync-interval %s: %v, want an error naming the flag", role, bad, err)
			}
		}
	}
}
