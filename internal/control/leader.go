package control

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardsec/ward/internal/store"
)

// leaderLock is the PostgreSQL advisory lock of the servers' leader
// ("wardlead").
const leaderLock = 0x776172646c656164

// sweepEvery is how often the leader runs the jobs that must run once
// among all servers sharing a store.
const sweepEvery = 30 * time.Second

// lead runs the leader-only jobs while this server holds the leader lock:
// with several servers on one PostgreSQL exactly one does at a time, and
// another takes over when it dies. A store without elections (SQLite: one
// server per file) makes this server the leader.
func (s *Server) lead(ctx context.Context) error {
	jobs := func(ctx context.Context) {
		s.leader.Set(1)
		defer s.leader.Set(0)
		s.cfg.Log.Info("leading: this server runs the expiry sweep")
		var bans sync.WaitGroup
		defer bans.Wait()
		bans.Go(func() { s.handler.ExpireBans(ctx) })
		bans.Go(func() { s.handler.ExpireInstances(ctx) })
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		for {
			s.sweep(ctx)
			s.purgeSecrets(ctx)
			select {
			case <-ctx.Done():
				s.cfg.Log.Info("no longer leading")
				return
			case <-t.C:
			}
		}
	}
	l, ok := s.store.(store.Leader)
	if !ok {
		jobs(ctx)
		return ctx.Err()
	}
	return l.Lead(ctx, leaderLock, jobs)
}

// sweep is the expiry sweep: it reports, once for all servers, the
// certificates that expire within a day without having been renewed.
func (s *Server) sweep(ctx context.Context) {
	now := time.Now()
	n, err := s.store.CountExpiring(ctx, now, now.Add(24*time.Hour))
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Log.Warn("expiry sweep failed", "err", err)
		}
		return
	}
	s.sweeps.Inc()
	if n > 0 {
		s.cfg.Log.Info("expiry sweep", "expiring_24h", n)
	}
}

// leaderMetrics are the metrics of the election.
func leaderMetrics(reg prometheus.Registerer) (prometheus.Gauge, prometheus.Counter) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ward_server_leader", Help: "1 while this server holds the leader lock and runs the leader-only jobs."})
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ward_server_sweeps_total", Help: "Expiry sweeps this server ran as leader."})
	reg.MustRegister(g, c)
	return g, c
}
