package cli

import (
	"errors"
	"time"

	"github.com/wardsec/ward/internal/audit"
)

// syncIntervalFlag is --audit-sync-interval: how long a request record
// may wait for its fsync (a Go duration), or "always". Zero is the
// default, audit.DefaultSyncInterval.
type syncIntervalFlag time.Duration

func (f *syncIntervalFlag) duration() time.Duration { return time.Duration(*f) }

func (f *syncIntervalFlag) String() string {
	switch d := time.Duration(*f); d {
	case audit.SyncAlways:
		return "always"
	case 0:
		return audit.DefaultSyncInterval.String()
	default:
		return d.String()
	}
}

func (f *syncIntervalFlag) Set(s string) error {
	if s == "always" {
		*f = syncIntervalFlag(audit.SyncAlways)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 1s or 200ms, or always")
	}
	if d <= 0 {
		return errors.New("want a positive duration, or always to fsync every record before the request goes on")
	}
	*f = syncIntervalFlag(d)
	return nil
}

func (f *syncIntervalFlag) Type() string { return "duration|always" }

const syncIntervalUsage = "how long a request record may wait for its fsync (it survives a crash of the process at once; " +
	"a power loss may take this much), or always to fsync each record before the request goes on"
