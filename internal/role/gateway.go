package role

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
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/atomicfile"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/edgetls"
	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/ratelimit"
)

// Gateway is the edge gateway role (`ward gateway`).
type Gateway struct {
	Workload
	// Proxy configures the gateway itself. Run fills in what it owns:
	// TrustDomain, TLS, RedirectHandler, Initial (unless ConfigFile is
	// set), Source, APIKeys, AnonymousSecret, Limiter (with Redis),
	// Events, Log and Registry (when nil).
	Proxy gateway.Config
	// Edge says where the edge certificate comes from.
	Edge EdgeCert
	// ClientCA is a PEM file of roots for users' client certificates
	// (routes with user: mtls); empty: none.
	ClientCA string
	// Redis is the address of the Redis that shares rate limits between
	// replicas, RedisPasswordFile a file holding its password; empty: in
	// process.
	Redis             string
	RedisPasswordFile string
	// AnonymousSecretFile holds the key of anonymous ids, shared by
	// replicas; empty: DataDir/anonymous.key, created.
	AnonymousSecretFile string
	// APIKeys is the table the key feed keeps current; nil: a new one.
	APIKeys *gateway.KeyTable
	// Ready, if set, is called once the gateway is bound, before it
	// serves (to learn its addresses).
	Ready func(*gateway.Gateway)
}

// EdgeCert is the source of the gateway's edge certificate: exactly one
// of files (CertFile, KeyFile), ACME (ACMEDirectory) or Ward's CA
// (WardCA, for Names).
type EdgeCert struct {
	CertFile, KeyFile string

	ACMEDirectory string
	ACMEEmail     string
	ACMEDomains   []string
	ACMECA        string // PEM roots for the ACME directory's HTTPS; empty: system roots

	WardCA bool
	Names  []string
}

func (e EdgeCert) check() error {
	n := 0
	for _, set := range []bool{e.CertFile != "" || e.KeyFile != "", e.ACMEDirectory != "", e.WardCA} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("choose one certificate source: --tls-cert and --tls-key, --acme-directory, or --tls-ward-ca")
	}
	return nil
}

// Run enrolls or reloads the gateway's identity, opens its audit spool,
// obtains its edge certificate and first snapshot, then runs the gateway
// with the identity source, the snapshot follower, the API key feed, the
// spool's shipper and the certificate source until ctx ends or one fails.
func (g *Gateway) Run(ctx context.Context) error {
	cfg := g.Proxy
	if err := g.Edge.check(); err != nil {
		return err
	}
	log := g.logger().With("role", "gateway", "gateway", cfg.Name)
	src, client, err := g.source(ctx, func(td spiffeid.TrustDomain) (spiffeid.ID, error) {
		id, err := spiffeid.FromSegments(td, "gateway", cfg.Name)
		if err != nil {
			return id, fmt.Errorf("--name %q: %w", cfg.Name, err)
		}
		return id, nil
	}, log)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections() // after every part below has stopped
	certs, err := g.certSource(client, log)
	if err != nil {
		return err
	}
	var clientCAs *x509.CertPool
	if g.ClientCA != "" {
		data, err := os.ReadFile(g.ClientCA)
		if err != nil {
			return fmt.Errorf("--client-ca: %w", err)
		}
		clientCAs = x509.NewCertPool()
		if !clientCAs.AppendCertsFromPEM(data) {
			return fmt.Errorf("--client-ca %s: no PEM certificate", g.ClientCA)
		}
	}
	cfg.TLS = edgetls.ServerConfig(certs, clientCAs)
	if cfg.HTTPListen != "" {
		cfg.RedirectHandler = edgetls.RedirectHandler(cfg.Listen, certs)
		if a, ok := certs.(*edgetls.ACMESource); ok {
			cfg.RedirectHandler = a.HTTPHandler(cfg.RedirectHandler)
		}
	}
	if cfg.AnonymousSecret, err = g.anonymousSecret(); err != nil {
		return err
	}
	if g.Redis != "" {
		rdb, err := g.redisClient(ctx)
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
	auditDir, cursor := auditPaths(g.DataDir, g.AuditDir)
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	spool, events, err := proxyAudit(auditDir, cursor, g.AuditSyncInterval, client, cfg.Registry, g.AuditFailOpen, log)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer spool.Close()
	keys := g.APIKeys
	if keys == nil {
		keys = new(gateway.KeyTable)
	}
	keysFile := filepath.Join(g.DataDir, fileAPIKeys)
	if saved, err := loadAPIKeys(keysFile); err == nil {
		keys.Replace(saved.Keys)
		log.Info("API keys from the last table received", "version", saved.Version, "keys", len(saved.Keys))
	} else if !errors.Is(err, fs.ErrNotExist) {
		log.Warn("ignoring the saved API key table", "err", err)
	}
	var res *serverResources
	if cfg.ConfigFile == "" {
		if res, err = followServer(ctx, client, g.DataDir, log); err != nil {
			return err
		}
		cfg.Initial = &gateway.Snapshot{Origin: res.origin, Version: res.first.Version, Data: []byte(res.first.Documents)}
	}
	cfg.APIKeys, cfg.TrustDomain, cfg.Source, cfg.Log, cfg.Events = keys, src.Bundle().TrustDomain, src, log, events
	flowShip := newFlowShipper(client, g.FlowInterval, log)
	cfg.Flows = flowShip.table
	gw, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	if g.Ready != nil {
		g.Ready(gw)
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
	grp.Go(func() error { return flowShip.Run(ctx) })
	grp.Go(func() error {
		// ACME's tls-alpn-01 needs the listener up while the first
		// certificate is ordered, so the source starts beside the gateway.
		if err := certs.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("edge certificate: %w", err)
		}
		return nil
	})
	return ignoreCanceled(grp.Wait())
}

// certSource builds the edge certificate source Edge chose.
func (g *Gateway) certSource(client *control.Client, log *slog.Logger) (edgetls.CertSource, error) {
	e := g.Edge
	switch {
	case e.CertFile != "" || e.KeyFile != "":
		if e.CertFile == "" || e.KeyFile == "" {
			return nil, errors.New("--tls-cert and --tls-key go together")
		}
		return edgetls.NewFileSource(e.CertFile, e.KeyFile, log)
	case e.ACMEDirectory != "":
		var roots *x509.CertPool
		if e.ACMECA != "" {
			data, err := os.ReadFile(e.ACMECA)
			if err != nil {
				return nil, fmt.Errorf("--acme-ca: %w", err)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(data) {
				return nil, fmt.Errorf("--acme-ca %s: no PEM certificate", e.ACMECA)
			}
		}
		return edgetls.NewACMESource(edgetls.ACMEConfig{DirectoryURL: e.ACMEDirectory, Email: e.ACMEEmail, Domains: e.ACMEDomains,
			CacheDir: filepath.Join(g.DataDir, "acme"), RootCAs: roots, Log: log})
	default:
		if len(e.Names) == 0 {
			return nil, errors.New("--tls-ward-ca needs --tls-names")
		}
		obtain := func(ctx context.Context) (*tls.Certificate, error) {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, err
			}
			return client.EdgeCertificate(ctx, key, e.Names)
		}
		// Cached, so that a restart while the server is down still serves.
		return edgetls.NewRenewingSource(edgetls.CachedObtain(filepath.Join(g.DataDir, fileEdgeCert), e.Names, obtain, log), log), nil
	}
}

// anonymousSecret reads the key of anonymous ids, creating it (32 random
// bytes, mode 0600) in the data directory on first use.
func (g *Gateway) anonymousSecret() ([]byte, error) {
	path := g.AnonymousSecretFile
	if path == "" {
		path = filepath.Join(g.DataDir, "anonymous.key")
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil && len(data) < 16:
		return nil, fmt.Errorf("anonymous-id key %s: %d bytes, want at least 16", path, len(data))
	case err == nil:
		return data, nil
	case !errors.Is(err, os.ErrNotExist) || g.AnonymousSecretFile != "":
		return nil, fmt.Errorf("anonymous-id key: %w", err)
	}
	data = make([]byte, 32)
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(g.DataDir, 0o700); err != nil {
		return nil, err
	}
	return data, atomicfile.Write(path, data, 0o600)
}

// redisClient connects to the shared rate-limit store and checks it answers.
func (g *Gateway) redisClient(ctx context.Context) (*redis.Client, error) {
	opts := &redis.Options{Addr: g.Redis, DialTimeout: 2 * time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		// Maintenance notifications start a background goroutine per
		// connection that outlives Close; Ward does not need them.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}}
	if g.RedisPasswordFile != "" {
		pw, err := os.ReadFile(g.RedisPasswordFile)
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
		return nil, fmt.Errorf("--redis %s: %w", g.Redis, err)
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
