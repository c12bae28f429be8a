package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/role"
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
			bundle, err := loadBundle(g.bundle, "")
			if err != nil {
				return err
			}
			sc := &role.Sidecar{
				Workload: role.Workload{Server: g.server, Bundle: bundle, Token: token, DataDir: dir,
					AuditDir: auditDir, AuditSyncInterval: auditSync.duration(), AuditFailOpen: auditFailOpen, Log: g.logger()},
				Proxy: cfg,
			}
			return sc.Run(cmd.Context())
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
