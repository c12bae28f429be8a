package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/ratelimit"
	"github.com/wardsec/ward/internal/role"
)

// gatewayFlags are the flags of `ward gateway` beyond gateway.Config.
type gatewayFlags struct {
	token, dir               string
	tlsCert, tlsKey          string
	acmeDir, acmeEmail       string
	acmeDomains              []string
	acmeCA                   string
	wardCA                   bool
	tlsNames                 []string
	clientCA                 string
	redisAddr, redisPassFile string
	anonSecretFile           string
	connRate                 string
	connBurst                int
	auditDir                 string
	auditFailOpen            bool
	auditSync                syncIntervalFlag
	body                     bodyFlags
}

func gatewayCmd(g *globals) *cobra.Command {
	var cfg gateway.Config
	var f gatewayFlags
	cmd := &cobra.Command{
		Use:   "gateway --name NAME --server URL --bundle FILE (--tls-cert F --tls-key F | --acme-directory URL ... | --tls-ward-ca) [--config FILE]",
		Short: "Run the edge API gateway: TLS, API keys and user tokens, rate limits, routing into the mesh",
		Long: `Run an edge gateway (spiffe://TD/gateway/NAME). It terminates TLS on
--listen, matches each request to a Route, authenticates the
application (X-Api-Key, keys created with 'ward apikey create') and the user
(a bearer JWT from an Issuer, or a client certificate from --client-ca),
checks the route's condition and the target service's AccessPolicies, applies
the route's rate limit (in process, or shared through --redis), and forwards
into the mesh over mutual TLS with its own SVID. The service receives a
short-lived identity token signed by Ward (X-Ward-Identity), not the caller's
credentials. Every request leaves an access record.

Routes, Issuers, the Services they lead to and those Services'
AccessPolicies come from the server, which pushes every change within a
second. The last snapshot applied, and the API key table (hashes only), are
kept in --data-dir and enforced while the server is unreachable, also
across restarts. --config FILE reads the resources from a file instead.

The certificate comes from one of: --tls-cert/--tls-key (reloaded when the
files change), ACME (--acme-directory, --acme-domains, renewed before
expiry), or Ward's CA (--tls-ward-ca with --tls-names).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Name == "" || g.server == "" || g.bundle == "" {
				return errors.New("--name, --server and --bundle are required")
			}
			if f.dir == "" {
				f.dir = "ward-gateway-" + cfg.Name
			}
			if cfg.Limits.MaxPerSource < 1 {
				return errors.New("--max-requests-per-source: must be at least 1")
			}
			var err error
			if cfg.Bodies, err = f.body.bodies(); err != nil {
				return err
			}
			rate, err := ratelimit.ParseRate(f.connRate)
			if err != nil {
				return fmt.Errorf("--conn-rate: %w", err)
			}
			cfg.ConnRate = ratelimit.Limit{Rate: rate, Burst: f.connBurst}
			if err := cfg.ConnRate.Validate(); err != nil {
				return fmt.Errorf("--conn-rate/--conn-burst: %w", err)
			}
			bundle, err := loadBundle(g.bundle, "")
			if err != nil {
				return err
			}
			gw := &role.Gateway{
				Workload: role.Workload{Server: g.server, Bundle: bundle, Token: f.token, DataDir: f.dir,
					AuditDir: f.auditDir, AuditSyncInterval: f.auditSync.duration(), AuditFailOpen: f.auditFailOpen, Log: g.logger()},
				Proxy: cfg,
				Edge: role.EdgeCert{CertFile: f.tlsCert, KeyFile: f.tlsKey,
					ACMEDirectory: f.acmeDir, ACMEEmail: f.acmeEmail, ACMEDomains: f.acmeDomains, ACMECA: f.acmeCA,
					WardCA: f.wardCA, Names: f.tlsNames},
				ClientCA: f.clientCA, Redis: f.redisAddr, RedisPasswordFile: f.redisPassFile, AnonymousSecretFile: f.anonSecretFile,
			}
			return gw.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Name, "name", "edge", "gateway name (spiffe://TD/gateway/NAME)")
	fl.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "HTTPS address")
	fl.StringVar(&cfg.HTTPListen, "http-listen", "", "plain HTTP address that only redirects to HTTPS (and answers ACME http-01); empty: none")
	fl.StringVar(&cfg.ConfigFile, "config", "", "read resources from this file (reloaded on change) instead of the server's snapshots")
	fl.StringVar(&cfg.Admin, "admin", "", "address for /metrics and /healthz (empty: none)")
	fl.StringVar(&f.token, "token", "", "one-time join token for the first start")
	fl.StringVar(&f.dir, "data-dir", "", "where the SVID, ACME account and anonymous-id key are kept (default ./ward-gateway-NAME)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "certificate chain PEM (with --tls-key)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key PEM (with --tls-cert)")
	fl.StringVar(&f.acmeDir, "acme-directory", "", "ACME directory URL (Let's Encrypt or any RFC 8555 CA)")
	fl.StringVar(&f.acmeEmail, "acme-email", "", "ACME account contact")
	fl.StringSliceVar(&f.acmeDomains, "acme-domains", nil, "DNS names of the ACME certificate")
	fl.StringVar(&f.acmeCA, "acme-ca", "", "PEM roots trusted for the ACME directory's HTTPS (a private CA); default: system roots")
	fl.BoolVar(&f.wardCA, "tls-ward-ca", false, "obtain the edge certificate from Ward's CA (names from --tls-names)")
	fl.StringSliceVar(&f.tlsNames, "tls-names", []string{"localhost", "127.0.0.1"}, "names of the certificate from Ward's CA")
	fl.StringVar(&f.clientCA, "client-ca", "", "PEM roots for user client certificates (routes with user: mtls)")
	fl.StringVar(&f.redisAddr, "redis", "", "Redis address (host:port) to share rate limits between gateway replicas; empty: in process")
	fl.StringVar(&f.redisPassFile, "redis-password-file", "", "file holding the Redis password")
	fl.StringVar(&f.connRate, "conn-rate", "100/s", "new connections one source address may open (COUNT/PERIOD)")
	fl.IntVar(&f.connBurst, "conn-burst", 200, "connections one source address may open at once")
	fl.StringVar(&f.auditDir, "audit-dir", "", "local audit log, shipped to the server (default DATA_DIR/audit)")
	fl.Var(&f.auditSync, "audit-sync-interval", syncIntervalUsage)
	fl.BoolVar(&f.auditFailOpen, "audit-fail-open", false, "serve requests even when they cannot be recorded (a risk: the trail gets gaps)")
	fl.IntVar(&cfg.Limits.MaxPerSource, "max-requests-per-source", proxy.DefaultMaxPerSource, "concurrent requests one source (IPv4 address, IPv6 /64) may have in flight; past it 429")
	f.body.register(fl)
	fl.StringVar(&f.anonSecretFile, "anonymous-secret-file", "", "key of anonymous ids, shared by replicas (default DATA_DIR/anonymous.key, created)")
	return cmd
}
