package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ChannelResources is the notification channel of resource changes.
const ChannelResources = "ward_resources"

// Notifier is a Store that tells of changes committed by any server
// sharing it. Only PostgreSQL is one; SQLite has one server per file, which
// knows its own changes.
type Notifier interface {
	// Listen calls fn(channel) for each notification on channels until ctx
	// ends, then returns ctx.Err(). It holds one dedicated connection,
	// reconnects when it is lost, and calls fn once after each reconnect
	// (a change may have been missed meanwhile).
	Listen(ctx context.Context, fn func(channel string), channels ...string) error
}

// Leader is a Store that elects one leader among the servers sharing it.
type Leader interface {
	// Lead runs fn whenever this process holds the leader lock named key,
	// with a context cancelled when the lock is lost or ctx ends, and
	// returns ctx.Err() when ctx ends.
	Lead(ctx context.Context, key int64, fn func(ctx context.Context)) error
}

var _ Leader = (*SQL)(nil)

// leaderCheck is how often a candidate tries the lock, and a leader checks
// that it still holds its connection.
const leaderCheck = time.Second

// listen is Notifier.Listen on PostgreSQL; Notifying advertises it (a
// SQLite store has no other servers to hear from).
func (s *SQL) listen(ctx context.Context, fn func(string), channels ...string) error {
	for attempt := 0; ; attempt++ {
		err := s.listenOnce(ctx, fn, channels)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_ = err // reconnect after a pause
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt+1)*500*time.Millisecond, 5*time.Second)):
		}
	}
}

func (s *SQL) listenOnce(ctx context.Context, fn func(string), channels []string) error {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("listen %s: %w", ch, err)
		}
	}
	for _, ch := range channels {
		fn(ch) // anything missed before LISTEN took effect
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		fn(n.Channel)
	}
}

// pgNotifier gives a PostgreSQL store the Notifier capability.
type pgNotifier struct{ *SQL }

func (p pgNotifier) Listen(ctx context.Context, fn func(string), channels ...string) error {
	return p.listen(ctx, fn, channels...)
}

// Lead implements Leader. On PostgreSQL the lock is a session advisory
// lock on a dedicated connection: it is released when the server stops or
// its connection dies, and another server takes over. On SQLite (one
// server per file) fn runs at once.
func (s *SQL) Lead(ctx context.Context, key int64, fn func(ctx context.Context)) error {
	if !s.pg {
		fn(ctx)
		return ctx.Err()
	}
	for {
		s.leadOnce(ctx, key, fn)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(leaderCheck):
		}
	}
}

func (s *SQL) leadOnce(ctx context.Context, key int64, fn func(ctx context.Context)) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil || !got {
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(lctx)
	}()
	t := time.NewTicker(leaderCheck)
	defer t.Stop()
	for held := true; held; {
		select {
		case <-done:
			held = false
		case <-lctx.Done():
			held = false
		case <-t.C:
			pctx, pcancel := context.WithTimeout(ctx, leaderCheck)
			held = conn.PingContext(pctx) == nil
			pcancel()
		}
	}
	cancel()
	<-done
	uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_, _ = conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1)`, key)
	ucancel()
}
