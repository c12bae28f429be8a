package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/sidecar"
)

func sidecarCmd(g *globals) *cobra.Command {
	var cfg sidecar.Config
	var token, dir, auditDir string
	var auditFailOpen bool
	var auditSync syncIntervalFlag
	var upstreams []string
	var body bodyFlags
	cmd := &cobra.Command{
		Use:   "sidecar --service NAME --listen ADDR --app ADDR --server URL --bundle FILE [--token T] [--config FILE]",
		Short: "Run the mesh proxy beside one service: mTLS in and out, default-deny policy",
		Long: `Run the sidecar of one service. Its Services and AccessPolicies come from
the server, which pushes every change within a second; the last snapshot
applied is kept in --data-dir and enforced while the server is unreachable,
also across restarts (--config FILE reads them from a file instead).
Inbound (--listen) it accepts only mutual
TLS 1.3 from SVIDs of the trust domain, authorizes every request against the
AccessPolicies targeting the service (no policy: deny) and forwards to the
app (--app, loopback) with the verified caller in X-Ward-Peer-Id.

Outbound, the app sets HTTP_PROXY=http://<--outbound> and calls
http://<service>/...; the sidecar opens mutual TLS to that service and checks
it is that service. --upstream NAME=ADDR adds a local listener that carries
everything (HTTP/2 and gRPC included, or raw TCP for tcp services) to NAME.

On first start the sidecar enrolls with --token and keeps its SVID in
--data-dir; later starts reuse it while it is valid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Service == "" || g.server == "" || g.bundle == "" {
				return errors.New("--service, --server and --bundle are required")
			}
			cfg.Upstreams = map[string]string{}
			for _, u := range upstreams {
				name, addr, ok := strings.Cut(u, "=")
				if !ok || name == "" || addr == "" {
					return fmt.Errorf("--upstream %q: want NAME=ADDR", u)
				}
				cfg.Upstreams[name] = addr
			}
			if dir == "" {
				dir = "ward-sidecar-" + cfg.Service
			}
			var err error
			if cfg.Bodies, err = body.bodies(); err != nil {
				return err
			}
			return runSidecar(cmd.Context(), g, cfg, token, dir, auditDir, auditSync, auditFailOpen)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Service, "service", "", "the service this sidecar fronts (spiffe://TD/svc/NAME)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:9443", "inbound mutual-TLS address")
	f.StringVar(&cfg.App, "app", "127.0.0.1:8080", "the app's address (loopback only)")
	f.StringVar(&cfg.Outbound, "outbound", "127.0.0.1:15001", "the app's HTTP proxy address (loopback only; empty: none)")
	f.StringSliceVar(&upstreams, "upstream", nil, "NAME=ADDR: a local listener carrying everything to service NAME (repeatable)")
	f.StringVar(&cfg.ConfigFile, "config", "", "read resources from this file (reloaded on change) instead of the server's snapshots")
	f.StringVar(&cfg.Admin, "admin", "", "address for /metrics and /healthz (empty: none)")
	f.StringVar(&token, "token", "", "one-time join token for the first start")
	f.StringVar(&dir, "data-dir", "", "where the SVID is kept (default ./ward-sidecar-NAME)")
	f.StringVar(&auditDir, "audit-dir", "", "local audit log, shipped to the server (default DATA_DIR/audit)")
	f.Var(&auditSync, "audit-sync-interval", syncIntervalUsage)
	f.BoolVar(&auditFailOpen, "audit-fail-open", false, "serve requests even when they cannot be recorded (a risk: the trail gets gaps)")
	body.register(f)
	return cmd
}

func runSidecar(ctx context.Context, g *globals, cfg sidecar.Config, token, dir, auditDir string, auditSync syncIntervalFlag, auditFailOpen bool) error {
	log := g.logger().With("role", "sidecar", "service", cfg.Service)
	src, client, err := workloadSource(ctx, g, func(td spiffeid.TrustDomain) (spiffeid.ID, error) {
		id, err := spiffeid.FromSegments(td, "svc", cfg.Service)
		if err != nil {
			return id, fmt.Errorf("--service %q: %w", cfg.Service, err)
		}
		return id, nil
	}, token, dir, log)
	if err != nil {
		return err
	}
	cfg.TrustDomain, cfg.Source, cfg.Log = src.Bundle().TrustDomain, src, log
	spoolDir, cursor := auditPaths(dir, auditDir)
	cfg.Registry = prometheus.NewRegistry()
	spool, events, err := proxyAudit(spoolDir, cursor, auditSync.duration(), client, cfg.Registry, auditFailOpen, log)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer spool.Close()
	cfg.Events = events
	var res *serverResources
	if cfg.ConfigFile == "" {
		if res, err = followServer(ctx, client, dir, log); err != nil {
			return err
		}
		cfg.Initial = &sidecar.Snapshot{Origin: res.origin, Version: res.first.Version, Data: []byte(res.first.Documents)}
	}
	sc, err := sidecar.New(cfg)
	if err != nil {
		return err
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
	if err := grp.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
