package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/role"
	"github.com/wardsec/ward/internal/sidecar"
)

func sidecarCmd(g *globals) *cobra.Command {
	var cfg sidecar.Config
	var token, dir, auditDir string
	var auditFailOpen bool
	var auditSync syncIntervalFlag
	var upstreams, labels []string
	var advertise string
	var drain time.Duration
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
--data-dir; later starts reuse it while it is valid.

Following a server, the sidecar registers itself as an instance of its
service: callers get its --listen address (or --advertise) in the
service's endpoints, with no address written by hand. It renews the
registration while it runs; the server drops an instance that stops
renewing after its TTL. On SIGTERM or SIGINT it deregisters, keeps
serving for --drain while callers learn it is gone, then finishes the
requests in flight and exits; a second signal cuts the drain short.`,
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
			reg, err := registration(advertise, labels, drain)
			if err != nil {
				return err
			}
			if cfg.ConfigFile != "" && (advertise != "" || len(labels) > 0) {
				return errors.New("--advertise and --label register the sidecar with the server: not with --config")
			}
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
			if cfg.ConfigFile == "" {
				ctx := cmd.Context()
				hurry, done := make(chan struct{}), make(chan struct{})
				defer close(done)
				go cutDrainShort(ctx, hurry, done)
				reg.Hurry = hurry
				sc.Register = reg
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
	f.StringVar(&advertise, "advertise", "", "host:port callers reach --listen at, registered with the server (default: the --listen address; an unspecified host such as 0.0.0.0 becomes the address the server sees)")
	f.StringArrayVar(&labels, "label", nil, "KEY=VALUE describing this instance, e.g. version=v2 or zone=a (repeatable)")
	f.DurationVar(&drain, "drain", 2*time.Second, "on a clean stop, keep serving this long after deregistering: long enough for the server to push the new endpoint set to callers (about a second), so no request is lost; 0: none")
	body.register(f)
	return cmd
}

// registration checks the instance flags of `ward sidecar`.
func registration(advertise string, labels []string, drain time.Duration) (*role.Registration, error) {
	if advertise != "" {
		host, port, err := net.SplitHostPort(advertise)
		if err != nil {
			return nil, fmt.Errorf("--advertise %q: want host:port: %w", advertise, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("--advertise %q: port %q is not a number from 1 to 65535", advertise, port)
		}
		if host == "" {
			return nil, fmt.Errorf("--advertise %q: the host is missing", advertise)
		}
	}
	if drain < 0 {
		return nil, fmt.Errorf("--drain %v: must not be negative", drain)
	}
	reg := &role.Registration{Advertise: advertise, Drain: drain}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || !labelKey(k) || !labelValue(v) {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE, KEY of letters, digits, '.', '_' or '-' (up to 63), VALUE printable (up to 253)", l)
		}
		if reg.Labels == nil {
			reg.Labels = map[string]string{}
		}
		if _, dup := reg.Labels[k]; dup {
			return nil, fmt.Errorf("--label %q: %s given twice", l, k)
		}
		reg.Labels[k] = v
	}
	return reg, nil
}

func labelKey(k string) bool {
	if k == "" || len(k) > 63 {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func labelValue(v string) bool {
	if len(v) > 253 {
		return false
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f || c == utf8.RuneError {
			return false
		}
	}
	return true
}

// cutDrainShort closes hurry on a second SIGINT or SIGTERM once ctx (the
// first) has ended, until done closes.
func cutDrainShort(ctx context.Context, hurry, done chan struct{}) {
	select {
	case <-ctx.Done():
	case <-done:
		return
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case <-sigs:
		close(hurry)
	case <-done:
	}
}
