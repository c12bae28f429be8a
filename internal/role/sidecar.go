package role

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/sidecar"
)

// Sidecar is the mesh sidecar role (`ward sidecar`).
type Sidecar struct {
	Workload
	// Proxy configures the sidecar itself. Run fills in what it owns:
	// TrustDomain, Initial (unless ConfigFile is set), Source, Events, Log
	// and Registry (when nil).
	Proxy sidecar.Config
	// Ready, if set, is called once the sidecar is bound, before it
	// serves (to learn its addresses).
	Ready func(*sidecar.Sidecar)
}

// Run enrolls or reloads the sidecar's identity, opens its audit spool and
// obtains its first snapshot, then runs the sidecar with the identity
// source, the snapshot follower and the spool's shipper until ctx ends or
// one fails.
func (s *Sidecar) Run(ctx context.Context) error {
	cfg := s.Proxy
	log := s.logger().With("role", "sidecar", "service", cfg.Service)
	src, client, err := s.source(ctx, func(td spiffeid.TrustDomain) (spiffeid.ID, error) {
		id, err := spiffeid.FromSegments(td, "svc", cfg.Service)
		if err != nil {
			return id, fmt.Errorf("--service %q: %w", cfg.Service, err)
		}
		return id, nil
	}, log)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections() // after every part below has stopped
	cfg.TrustDomain, cfg.Source, cfg.Log = src.Bundle().TrustDomain, src, log
	spoolDir, cursor := auditPaths(s.DataDir, s.AuditDir)
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	spool, events, err := proxyAudit(spoolDir, cursor, s.AuditSyncInterval, client, cfg.Registry, s.AuditFailOpen, log)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer spool.Close()
	cfg.Events = events
	flowShip := newFlowShipper(client, s.FlowInterval, log)
	cfg.Flows = flowShip.table
	var res *serverResources
	if cfg.ConfigFile == "" {
		if res, err = followServer(ctx, client, s.DataDir, log); err != nil {
			return err
		}
		cfg.Initial = &sidecar.Snapshot{Origin: res.origin, Version: res.first.Version, Data: []byte(res.first.Documents)}
	}
	sc, err := sidecar.New(cfg)
	if err != nil {
		return err
	}
	if s.Ready != nil {
		s.Ready(sc)
	}
	grp, ctx := errgroup.WithContext(ctx)
	if res != nil {
		res.started(log)
		grp.Go(func() error {
			return res.run(ctx, func(origin string, version int64, data []byte) error {
				return sc.Apply(sidecar.Snapshot{Origin: origin, Version: version, Data: data})
			})
		})
	}
	grp.Go(func() error { return src.Run(ctx) })
	grp.Go(func() error { return sc.Run(ctx) })
	grp.Go(func() error { return spool.Run(ctx) })
	grp.Go(func() error { return flowShip.Run(ctx) })
	return ignoreCanceled(grp.Wait())
}
