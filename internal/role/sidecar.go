package role

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/control"
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
	// Register, when set and the sidecar follows a server (no
	// ConfigFile), registers the sidecar as an instance of its service
	// and drains on a clean stop (see Registration). nil: neither.
	Register *Registration

	registrar Registrar // tests: instead of the server's client
}

// Run enrolls or reloads the sidecar's identity, opens its audit spool and
// obtains its first snapshot, then runs the sidecar with the identity
// source, the snapshot follower, the spool's shipper and, with Register,
// the instance registration until ctx ends or one fails. When ctx ends
// with Register set, it first deregisters, then serves for the drain,
// then stops everything (in-flight requests finish).
func (s *Sidecar) Run(ctx context.Context) error {
	started := time.Now()
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
	// The parts run on their own context, so that on a clean stop the
	// sidecar deregisters and keeps serving for the drain before they
	// stop; a part that fails still stops them all at once.
	parts, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	grp, pctx := errgroup.WithContext(parts)
	if res != nil {
		res.started(log)
		grp.Go(func() error {
			return res.run(pctx, func(origin string, version int64, data []byte) error {
				return sc.Apply(sidecar.Snapshot{Origin: origin, Version: version, Data: data})
			})
		})
	}
	grp.Go(func() error { return src.Run(pctx) })
	grp.Go(func() error { return sc.Run(pctx) })
	grp.Go(func() error { return spool.Run(pctx) })
	grp.Go(func() error { return flowShip.Run(pctx) })
	var registered <-chan struct{} // closed once deregistered on stop
	if reg := s.Register; reg != nil && res != nil {
		api := s.registrar
		if api == nil {
			api = client
		}
		addr := reg.Advertise
		if addr == "" {
			addr = sc.InboundAddr()
		}
		r := &registrar{api: api, log: log, reg: control.InstanceRegistration{
			Service: cfg.Service, Address: addr, Labels: reg.Labels, Started: started.UTC()}}
		// It stops with ctx (a clean stop: it deregisters) or with the
		// parts (one failed).
		rctx, rstop := context.WithCancel(pctx)
		defer rstop()
		unhook := context.AfterFunc(ctx, rstop)
		defer unhook()
		done := make(chan struct{})
		registered = done
		grp.Go(func() error { defer close(done); return r.Run(rctx) })
	}
	grp.Go(func() error {
		select {
		case <-pctx.Done(): // a part failed
			return nil
		case <-ctx.Done():
		}
		if registered != nil {
			<-registered // deregistered (or gave up) first
		}
		if registered != nil && s.Register.Drain > 0 {
			drain := time.NewTimer(s.Register.Drain)
			defer drain.Stop()
			log.Info("draining: serving inbound while callers learn this instance is gone", "drain", s.Register.Drain)
			select {
			case <-drain.C:
			case <-s.Register.Hurry:
				log.Info("drain cut short")
			case <-pctx.Done():
			}
		}
		stop()
		return nil
	})
	return ignoreCanceled(grp.Wait())
}
