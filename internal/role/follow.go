package role

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/wardsec/ward/internal/control"
)

// firstSnapshotWait bounds how long a proxy waits for the server at start
// before it falls back on its last good snapshot.
const firstSnapshotWait = 10 * time.Second

// serverResources is a proxy's resources when they come from the server:
// the snapshot it starts on and the follower that keeps it current.
type serverResources struct {
	first     control.SnapshotResponse
	origin    string
	fromSaved bool
	follower  *control.Follower
}

// followServer fetches the proxy's first snapshot from the server, or its
// last good one in dir when the server cannot be reached.
func followServer(ctx context.Context, client *control.Client, dir string, log *slog.Logger) (*serverResources, error) {
	f := &control.Follower{Client: client, Path: filepath.Join(dir, control.FileSnapshot), Log: log}
	first, origin, saved, err := f.First(ctx, firstSnapshotWait)
	if err != nil {
		return nil, fmt.Errorf("resources: %w", err)
	}
	return &serverResources{first: first, origin: origin, fromSaved: saved, follower: f}, nil
}

func serverOrigin(v int64) string { return fmt.Sprintf("server version %d", v) }

// started saves the first snapshot once the proxy has accepted it (one
// read from the saved file is already there).
func (r *serverResources) started(log *slog.Logger) {
	if r.fromSaved {
		return
	}
	if err := r.follower.Save(r.first); err != nil {
		log.Error("cannot save the last good snapshot", "err", err)
	}
}

// run follows the server's snapshots, handing each to apply.
func (r *serverResources) run(ctx context.Context, apply func(origin string, version int64, data []byte) error) error {
	return r.follower.Run(ctx, r.first.Next(), func(s control.SnapshotResponse) error {
		return apply(serverOrigin(s.Version), s.Version, []byte(s.Documents))
	})
}
