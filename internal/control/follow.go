package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/wardsec/ward/internal/atomicfile"
	"github.com/wardsec/ward/internal/retry"
)

// FileSnapshot is where a proxy keeps its last good snapshot, in its data
// directory.
const FileSnapshot = "snapshot.json"

// savedSnapshot is the file format of the last good snapshot: the
// snapshot with a checksum, so that a damaged file is refused, not applied.
type savedSnapshot struct {
	SnapshotResponse
	SHA256 string    `json:"sha256"`
	Saved  time.Time `json:"saved"`
}

func snapshotSum(s SnapshotResponse) string {
	head := fmt.Sprint(s.Version)
	if s.Cursor != 0 { // the cursor too, so that a damaged one is caught
		head += "/" + fmt.Sprint(s.Cursor)
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\n%s", head, s.Documents))
	return hex.EncodeToString(sum[:])
}

// Follower keeps a proxy's resources in step with the server: it long-polls
// the proxy's snapshot, hands every new version to the proxy, and saves the
// last one the proxy accepted, so that a proxy that restarts while the
// server is unreachable starts on it. A proxy that has neither the server
// nor a saved snapshot does not start: it never runs without policy.
type Follower struct {
	Client *Client
	Path   string // the last good snapshot, e.g. DATA_DIR/snapshot.json
	Log    *slog.Logger
	// Wait is the long poll's wait; zero: 30s.
	Wait time.Duration
}

// First returns the snapshot a proxy starts on, where it came from, and
// whether it is the saved one: the server's current snapshot, or, when the
// server cannot be reached within timeout, the last good one saved. A
// refusal by the server (this identity may not watch, or is revoked) is an
// error, not a reason to fall back.
func (f *Follower) First(ctx context.Context, timeout time.Duration) (snap SnapshotResponse, origin string, saved bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	snap, err = f.Client.Snapshot(cctx, -1, 0)
	cancel()
	if err == nil {
		return snap, fmt.Sprintf("server version %d", snap.Version), false, nil
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.Status != http.StatusServiceUnavailable {
		return SnapshotResponse{}, "", false, fmt.Errorf("snapshot: %w", err)
	}
	last, lerr := f.Load()
	if lerr != nil {
		return SnapshotResponse{}, "", false, fmt.Errorf("the server is unreachable (%v) and there is no last good snapshot to start on (%w): start the proxy once while the server is up", err, lerr)
	}
	f.Log.Warn("the server is unreachable: starting on the last good snapshot", "version", last.Version, "path", f.Path, "err", err)
	return last, fmt.Sprintf("last good snapshot, version %d (%s)", last.Version, f.Path), true, nil
}

// Load reads the last good snapshot.
func (f *Follower) Load() (SnapshotResponse, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return SnapshotResponse{}, err
	}
	var s savedSnapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return SnapshotResponse{}, fmt.Errorf("%s: %w", f.Path, err)
	}
	if s.SHA256 != snapshotSum(s.SnapshotResponse) {
		return SnapshotResponse{}, fmt.Errorf("%s: checksum mismatch, the file is damaged", f.Path)
	}
	return s.SnapshotResponse, nil
}

// Save records s as the last good snapshot (mode 0600: policies say a lot
// about the mesh).
func (f *Follower) Save(s SnapshotResponse) error {
	data, err := json.Marshal(savedSnapshot{SnapshotResponse: s, SHA256: snapshotSum(s), Saved: time.Now().UTC()})
	if err != nil {
		return err
	}
	return atomicfile.Write(f.Path, data, 0o600)
}

// Run long-polls snapshots newer than after until ctx ends and calls apply
// with each. One apply accepts is saved as the last good; one it refuses
// (it audits why) is not retried, and the proxy keeps enforcing what it
// has until the next version. Failures to reach the server are retried
// with backoff, the proxy still enforcing its last snapshot; a refusal
// that retrying cannot fix (403: not a proxy identity) is returned. It
// returns nil when ctx is canceled.
func (f *Follower) Run(ctx context.Context, after int64, apply func(SnapshotResponse) error) error {
	wait := f.Wait
	if wait == 0 {
		wait = feedWait
	}
	for failures := 0; ; {
		pollCtx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
		snap, err := f.Client.Snapshot(pollCtx, after, wait)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		var ae *APIError
		if errors.As(err, &ae) && (ae.Status == http.StatusForbidden || ae.Status == http.StatusBadRequest) {
			return fmt.Errorf("snapshot feed: %w", err)
		}
		if err != nil {
			failures++
			if failures == 1 || failures%10 == 0 {
				f.Log.Warn("cannot reach the server; enforcing the last snapshot", "version", after, "err", err)
			}
			if !retry.Sleep(ctx, retry.Backoff(failures, feedRetryBase, feedRetryCeiling)) {
				return nil
			}
			continue
		}
		failures = 0
		if snap.Next() <= after {
			continue
		}
		after = snap.Next()
		if err := apply(snap); err != nil {
			f.Log.Error("refused snapshot; enforcing the previous one", "version", snap.Version, "err", err)
			continue
		}
		if err := f.Save(snap); err != nil {
			f.Log.Error("cannot save the last good snapshot", "path", f.Path, "err", err)
		}
	}
}
