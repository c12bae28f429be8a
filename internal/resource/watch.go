package resource

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"time"
)

// WatchFile re-reads the resource file at path every interval until ctx
// ends and calls apply with its contents whenever they differ from the last
// contents applied (initially those whose SHA-256 is applied). apply
// validates and installs a new configuration; when it returns an error the
// file is refused with that error (file:line problems) in the log, the
// running configuration stays, and the same contents are not tried again.
// A file that cannot be read is logged and the configuration kept.
func WatchFile(ctx context.Context, path string, interval time.Duration, applied [32]byte, apply func(data []byte) error, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastBad [32]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(path)
		if err != nil {
			log.Error("cannot read resource file; keeping the running configuration", "path", path, "err", err)
			continue
		}
		sum := sha256.Sum256(data)
		if sum == applied || sum == lastBad {
			continue
		}
		if err := apply(data); err != nil {
			lastBad = sum
			log.Error("refusing invalid resource file; keeping the running configuration", "err", err)
			continue
		}
		applied = sum
	}
}
