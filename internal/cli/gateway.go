package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/atomicfile"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/edgetls"
	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/ratelimit"
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
			n := 0
			for _, set := range []bool{f.tlsCert != "" || f.tlsKey != "", f.acmeDir != "", f.wardCA} {
				if set {
					n++
				}
			}
			if n != 1 {
				return errors.New("choose one certificate source: --tls-cert and --tls-key, --acme-directory, or --tls-ward-ca")
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
			return runGateway(cmd.Context(), g, cfg, f)
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

// workloadSource enrolls (or reloads) the identity id, keeps it in dir and
// returns it with a server client that follows its credential and bundle.
func workloadSource(ctx context.Context, g *globals, id func(spiffeid.TrustDomain) (spiffeid.ID, error), token, dir string, log *slog.Logger) (*identity.Source, *control.Client, error) {
	bundle, err := loadBundle(g.bundle, "")
	if err != nil {
		return nil, nil, err
	}
	client, err := control.NewClient(g.server, bundle, nil)
	if err != nil {
		return nil, nil, err
	}
	src, err := identity.NewSource(identity.Config{TrustDomain: bundle.TrustDomain, Authority: client, Dir: dir, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	if err := src.SetBundle(bundle); err != nil {
		return nil, nil, err
	}
	client.FollowBundle(src.Bundle)
	wid, err := id(bundle.TrustDomain)
	if err != nil {
		return nil, nil, err
	}
	if err := src.LoadOrEnroll(ctx, wid, token); err != nil {
		return nil, nil, err
	}
	client.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	return src, client, nil
}

func runGateway(ctx context.Context, g *globals, cfg gateway.Config, f gatewayFlags) error {
	log := g.logger().With("role", "gateway", "gateway", cfg.Name)
	src, client, err := workloadSource(ctx, g, func(td spiffeid.TrustDomain) (spiffeid.ID, error) {
		id, err := spiffeid.FromSegments(td, "gateway", cfg.Name)
		if err != nil {
			return id, fmt.Errorf("--name %q: %w", cfg.Name, err)
		}
		return id, nil
	}, f.token, f.dir, log)
	if err != nil {
		return err
	}
	certs, err := certSource(client, f, log)
	if err != nil {
		return err
	}
	var clientCAs *x509.CertPool
	if f.clientCA != "" {
		data, err := os.ReadFile(f.clientCA)
		if err != nil {
			return fmt.Errorf("--client-ca: %w", err)
		}
		clientCAs = x509.NewCertPool()
		if !clientCAs.AppendCertsFromPEM(data) {
			return fmt.Errorf("--client-ca %s: no PEM certificate", f.clientCA)
		}
	}
	cfg.TLS = edgetls.ServerConfig(certs, clientCAs)
	if cfg.HTTPListen != "" {
		cfg.RedirectHandler = edgetls.RedirectHandler(cfg.Listen, certs)
		if a, ok := certs.(*edgetls.ACMESource); ok {
			cfg.RedirectHandler = a.HTTPHandler(cfg.RedirectHandler)
		}
	}
	rate, err := ratelimit.ParseRate(f.connRate)
	if err != nil {
		return fmt.Errorf("--conn-rate: %w", err)
	}
	cfg.ConnRate = ratelimit.Limit{Rate: rate, Burst: f.connBurst}
	if err := cfg.ConnRate.Validate(); err != nil {
		return fmt.Errorf("--conn-rate/--conn-burst: %w", err)
	}
	if cfg.AnonymousSecret, err = anonymousSecret(f); err != nil {
		return err
	}
	if f.redisAddr != "" {
		rdb, err := redisClient(ctx, f)
		if err != nil {
			return err
		}
		defer rdb.Close()
		cfg.Limiter = ratelimit.NewRedis(rdb, ratelimit.RedisOptions{})
	}
	if r, ok := certs.(*edgetls.RenewingSource); ok {
		// Ward's CA: fail at start, not at the first handshake.
		if err := r.Start(ctx); err != nil {
			return err
		}
	}
	auditDir, cursor := auditPaths(f.dir, f.auditDir)
	cfg.Registry = prometheus.NewRegistry()
	spool, events, err := proxyAudit(auditDir, cursor, f.auditSync.duration(), client, cfg.Registry, f.auditFailOpen, log)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer spool.Close()
	keys := new(gateway.KeyTable)
	keysFile := filepath.Join(f.dir, fileAPIKeys)
	if saved, err := loadAPIKeys(keysFile); err == nil {
		keys.Replace(saved.Keys)
		log.Info("API keys from the last table received", "version", saved.Version, "keys", len(saved.Keys))
	} else if !errors.Is(err, fs.ErrNotExist) {
		log.Warn("ignoring the saved API key table", "err", err)
	}
	var res *serverResources
	if cfg.ConfigFile == "" {
		if res, err = followServer(ctx, client, f.dir, log); err != nil {
			return err
		}
		cfg.Initial = &gateway.Snapshot{Origin: res.origin, Version: res.first.Version, Data: []byte(res.first.Documents)}
	}
	cfg.APIKeys, cfg.TrustDomain, cfg.Source, cfg.Log, cfg.Events = keys, src.Bundle().TrustDomain, src, log, events
	gw, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	grp, ctx := errgroup.WithContext(ctx)
	if res != nil {
		res.started(log)
		grp.Go(func() error {
			return res.run(ctx, func(origin string, version int64, data []byte) error {
				return gw.Apply(gateway.Snapshot{Origin: origin, Version: version, Data: data})
			})
		})
	}
	grp.Go(func() error { return src.Run(ctx) })
	grp.Go(func() error {
		return client.FollowAPIKeys(ctx, func(version int64, recs []authn.APIKeyRecord) {
			keys.Replace(recs)
			log.Info("API keys updated", "version", version, "keys", len(recs))
			if err := saveAPIKeys(keysFile, savedAPIKeys{Version: version, Keys: recs}); err != nil {
				log.Error("cannot save the API key table", "err", err)
			}
		})
	})
	grp.Go(func() error { return gw.Run(ctx) })
	grp.Go(func() error { return spool.Run(ctx) })
	grp.Go(func() error {
		// ACME's tls-alpn-01 needs the listener up while the first
		// certificate is ordered, so the source starts beside the gateway.
		if err := certs.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("edge certificate: %w", err)
		}
		return nil
	})
	if err := grp.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// certSource builds the edge certificate source the flags chose.
func certSource(client *control.Client, f gatewayFlags, log *slog.Logger) (edgetls.CertSource, error) {
	switch {
	case f.tlsCert != "" || f.tlsKey != "":
		if f.tlsCert == "" || f.tlsKey == "" {
			return nil, errors.New("--tls-cert and --tls-key go together")
		}
		return edgetls.NewFileSource(f.tlsCert, f.tlsKey, log)
	case f.acmeDir != "":
		var roots *x509.CertPool
		if f.acmeCA != "" {
			data, err := os.ReadFile(f.acmeCA)
			if err != nil {
				return nil, fmt.Errorf("--acme-ca: %w", err)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(data) {
				return nil, fmt.Errorf("--acme-ca %s: no PEM certificate", f.acmeCA)
			}
		}
		return edgetls.NewACMESource(edgetls.ACMEConfig{DirectoryURL: f.acmeDir, Email: f.acmeEmail, Domains: f.acmeDomains,
			CacheDir: filepath.Join(f.dir, "acme"), RootCAs: roots, Log: log})
	default:
		if len(f.tlsNames) == 0 {
			return nil, errors.New("--tls-ward-ca needs --tls-names")
		}
		obtain := func(ctx context.Context) (*tls.Certificate, error) {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, err
			}
			return client.EdgeCertificate(ctx, key, f.tlsNames)
		}
		// Cached, so that a restart while the server is down still serves.
		return edgetls.NewRenewingSource(edgetls.CachedObtain(filepath.Join(f.dir, fileEdgeCert), f.tlsNames, obtain, log), log), nil
	}
}

// anonymousSecret reads the key of anonymous ids, creating it (32 random
// bytes, mode 0600) in the data directory on first use.
func anonymousSecret(f gatewayFlags) ([]byte, error) {
	path := f.anonSecretFile
	if path == "" {
		path = filepath.Join(f.dir, "anonymous.key")
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil && len(data) < 16:
		return nil, fmt.Errorf("anonymous-id key %s: %d bytes, want at least 16", path, len(data))
	case err == nil:
		return data, nil
	case !errors.Is(err, os.ErrNotExist) || f.anonSecretFile != "":
		return nil, fmt.Errorf("anonymous-id key: %w", err)
	}
	data = make([]byte, 32)
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return nil, err
	}
	return data, atomicfile.Write(path, data, 0o600)
}

// redisClient connects to the shared rate-limit store and checks it answers.
func redisClient(ctx context.Context, f gatewayFlags) (*redis.Client, error) {
	opts := &redis.Options{Addr: f.redisAddr, DialTimeout: 2 * time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		// Maintenance notifications start a background goroutine per
		// connection that outlives Close; Ward does not need them.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}}
	if f.redisPassFile != "" {
		pw, err := os.ReadFile(f.redisPassFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-password-file: %w", err)
		}
		opts.Password = string(trimNewline(pw))
	}
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("--redis %s: %w", f.redisAddr, err)
	}
	return rdb, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// fileAPIKeys keeps the gateway's last API key table (hashes, never keys),
// so that a gateway restarted while the server is unreachable still
// authenticates applications.
const fileAPIKeys = "apikeys.json"

// fileEdgeCert keeps the edge certificate from Ward's CA with its key
// (0600), for the same reason.
const fileEdgeCert = "edge-cert.pem"

type savedAPIKeys struct {
	Version int64                `json:"version"`
	Keys    []authn.APIKeyRecord `json:"keys"`
}

func loadAPIKeys(path string) (savedAPIKeys, error) {
	var s savedAPIKeys
	data, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func saveAPIKeys(path string, s savedAPIKeys) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}
