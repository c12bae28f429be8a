package control

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/atomicfile"
	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/store"
)

// Files in a server's data directory.
const (
	FileStore      = "ward.db"
	FileKEK        = "kek"
	FileBundle     = "bundle.pem"
	FileClient     = "client.json"
	FileOperator   = "operator/admin.pem"
	operatorTTL    = 30 * 24 * time.Hour
	serverCertTTL  = 24 * time.Hour
	BootstrapAdmin = "admin"
	maintainEvery  = 5 * time.Second
)

// ServerConfig configures `ward server`.
type ServerConfig struct {
	DataDir      string
	TrustDomain  string // required on first start; must match afterwards
	Listen       string // TLS API, e.g. 127.0.0.1:8440
	PublicListen string // plain HTTP: CRL, OCSP, bundle, metrics
	PublicURL    string // written into certificates; default http://<PublicListen>
	StoreDSN     string // "" for SQLite in DataDir, or postgres://...
	KEKFile      string
	// KEK, when set, is the key-encryption key, given by the caller (read
	// from standard input by a sealed server); KEKFile, $WARD_KEK and
	// <data-dir>/kek are then not looked at, and nothing is written there.
	// A key that does not open the server's keys fails NewServer with an
	// error matching ca.ErrWrongKEK, and changes nothing.
	KEK          *ca.KEK
	SVIDTTL      time.Duration
	MaxSVIDTTL   time.Duration
	PublishDelay time.Duration // see ca.Config.PublishDelay
	// InstanceTTL is how long a registered instance lives without a
	// renewal (default DefaultInstanceTTL).
	InstanceTTL time.Duration
	Import      *ca.Import
	SANs        []string // extra DNS names or IPs for the server certificate
	EdgeNames   []string // patterns of names gateways may get edge certificates for; nil: DefaultEdgeNames
	// AuditDir holds the server's hash-chained audit log (default
	// <data-dir>/audit). Every event of the server, and every record
	// proxies ship, is written there before it is acknowledged.
	AuditDir string
	Log      *slog.Logger
	// Events also receive every event (default: the log, as text).
	Events audit.Sink
}

// ClientInfo is written to <data-dir>/client.json so that operator commands
// given only --data-dir know where the server is.
type ClientInfo struct {
	Server      string `json:"server"`
	TrustDomain string `json:"trustDomain"`
}

// Server is the `ward server` role.
type Server struct {
	cfg        ServerConfig
	store      store.Store
	auditLog   *audit.Writer
	CA         *ca.CA
	handler    *Handler
	api, pub   net.Listener
	serverCert atomic.Pointer[tls.Certificate]
	registry   *prometheus.Registry
	leader     prometheus.Gauge
	sweeps     prometheus.Counter
}

// NewServer opens the store and the CA (initialising them on first start),
// writes the data-dir files and binds both listeners. On error it releases
// what it opened.
func NewServer(ctx context.Context, cfg ServerConfig) (_ *Server, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.DataDir == "" {
		return nil, errors.New("--data-dir is required")
	}
	if cfg.EdgeNames == nil {
		cfg.EdgeNames = DefaultEdgeNames
	}
	if err := CheckEdgeNames(cfg.EdgeNames); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, filepath.Dir(FileOperator)), 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.store, err = OpenStore(ctx, cfg.StoreDSN, cfg.DataDir); err != nil {
		return nil, err
	}
	td, err := s.trustDomain(ctx)
	if err != nil {
		return nil, err
	}
	kek, kekFrom := cfg.KEK, "given"
	if kek == nil {
		if kek, kekFrom, err = ca.LoadKEK(cfg.KEKFile, filepath.Join(cfg.DataDir, FileKEK)); err != nil {
			return nil, err
		}
	}
	// A key that does not open the CA's keys is refused before anything
	// is sealed with it (the audit key, on a data directory without one).
	if err := ca.CheckKEK(ctx, s.store, kek); err != nil {
		return nil, err
	}
	if s.api, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if s.pub, err = net.Listen("tcp", cfg.PublicListen); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.PublicListen, err)
	}
	publicURL := cfg.PublicURL
	if publicURL == "" {
		publicURL = "http://" + s.pub.Addr().String()
	}
	auditKey, err := loadAuditKey(cfg.DataDir, kek, cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	auditDir := cfg.AuditDir
	if auditDir == "" {
		auditDir = filepath.Join(cfg.DataDir, DirAudit)
	}
	auditMetrics := audit.NewMetrics(s.registry)
	// Control-plane events (and the records proxies ship, which they may
	// delete once acknowledged) are fsynced before the answer.
	if s.auditLog, err = audit.Open(auditDir, audit.Options{Signer: auditKey, SyncInterval: audit.SyncAlways, Logger: cfg.Log, Metrics: auditMetrics}); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	events := cfg.Events
	if events == nil {
		events = audit.SlogSink{Log: cfg.Log}
	}
	events = audit.Multi{audit.LogSink{W: s.auditLog}, events}
	s.CA, err = ca.New(ctx, ca.Config{
		TrustDomain: td, Store: s.store, KEK: kek, PublicURL: publicURL,
		DefaultTTL: cfg.SVIDTTL, MaxTTL: cfg.MaxSVIDTTL, PublishDelay: cfg.PublishDelay, Events: events, Log: cfg.Log,
	}, cfg.Import)
	if err != nil {
		return nil, err
	}
	s.handler = &Handler{CA: s.CA, Store: s.store, Log: cfg.Log, Events: events, EdgeNames: cfg.EdgeNames, AuditLog: s.auditLog, InstanceTTL: cfg.InstanceTTL}
	if s.handler.Vault, err = openVault(ctx, s.store, kek, events, cfg.Log); err != nil {
		return nil, err
	}
	s.leader, s.sweeps = leaderMetrics(s.registry)
	s.registry.MustRegister(s.handler.DetectionMetrics()...)
	s.registry.MustRegister(s.handler.InstanceMetrics()...)
	s.registry.MustRegister(s.CA.Metrics(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := s.refreshServerCert(ctx); err != nil {
		return nil, err
	}
	if err := s.writeFiles(ctx); err != nil {
		return nil, err
	}
	cfg.Log.Info("ward server ready", "trust_domain", td.Name(), "api", s.URL(), "public", publicURL,
		"data_dir", cfg.DataDir, "kek", kekFrom)
	return s, nil
}

// OpenStore opens PostgreSQL for a postgres:// DSN, else SQLite in dataDir.
func OpenStore(ctx context.Context, dsn, dataDir string) (store.Store, error) {
	var st *store.SQL
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		pg, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return store.Notifying(pg), nil
	case dsn != "":
		return nil, errors.New("--store takes a postgres:// URL, or nothing for SQLite in the data directory")
	default:
		st, err = store.OpenSQLite(ctx, filepath.Join(dataDir, FileStore))
	}
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return st, nil
}

func (s *Server) trustDomain(ctx context.Context) (spiffeid.TrustDomain, error) {
	stored, err := s.store.GetMeta(ctx, "trust_domain")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return spiffeid.TrustDomain{}, err
	}
	name := s.cfg.TrustDomain
	if name == "" {
		if stored == "" {
			return spiffeid.TrustDomain{}, errors.New("--trust-domain is required on first start (for example --trust-domain example.org)")
		}
		name = stored
	}
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return td, fmt.Errorf("trust domain %q: %w", name, err)
	}
	return td, nil
}

// URL is the API's base URL.
func (s *Server) URL() string { return "https://" + s.api.Addr().String() }

// PublicAddr is the public listener's address.
func (s *Server) PublicAddr() string { return s.pub.Addr().String() }

// DataDir is the server's data directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }

// Store returns the server's store.
func (s *Server) Store() store.Store { return s.store }

// refreshServerCert issues the API certificate with a fresh key held only
// in memory.
func (s *Server) refreshServerCert(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, s.cfg.SANs...)
	if h, _, err := net.SplitHostPort(s.api.Addr().String()); err == nil {
		hosts = append(hosts, h)
	}
	iss, err := s.CA.IssueServer(ctx, key.Public(), hosts, serverCertTTL)
	if err != nil {
		return fmt.Errorf("issue server certificate: %w", err)
	}
	if old := s.serverCert.Swap(tlsCert(iss, key)); old != nil {
		// Superseded: connections made with it go on; nothing new trusts it.
		if _, err := s.CA.RevokeSerial(ctx, ca.SerialText(old.Leaf.SerialNumber), ca.ReasonSuperseded, "server"); err != nil {
			s.cfg.Log.Warn("cannot revoke superseded server certificate", "err", err)
		}
	}
	return nil
}

func tlsCert(iss *ca.Issued, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: iss.Cert}
	for _, x := range iss.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// writeFiles writes the bundle, client.json and, when missing or past half
// its life, the bootstrap operator credential.
func (s *Server) writeFiles(ctx context.Context) error {
	dir := s.cfg.DataDir
	if err := s.ensureOperatorCredential(ctx); err != nil {
		return err
	}
	if err := s.writeBundle(); err != nil {
		return err
	}
	// client.json comes last: once it exists, operator commands work.
	info, _ := json.MarshalIndent(ClientInfo{Server: s.URL(), TrustDomain: s.CA.TrustDomain().Name()}, "", "  ")
	return atomicfile.Write(filepath.Join(dir, FileClient), append(info, '\n'), 0o644)
}

func (s *Server) ensureOperatorCredential(ctx context.Context) error {
	path := filepath.Join(s.cfg.DataDir, FileOperator)
	if cert, err := LoadCredential(path); err == nil {
		leaf := cert.Leaf
		rec, err := s.store.GetCertificate(ctx, ca.SerialText(leaf.SerialNumber))
		fresh := time.Until(leaf.NotAfter) > operatorTTL/2 && rec.IssuerID == s.CA.IssuerID()
		if _, verr := s.CA.Bundle().VerifySVID(leaf, time.Now()); err == nil && verr == nil && !rec.Revoked() && fresh {
			return nil
		}
		if err == nil && !rec.Revoked() {
			// One bootstrap credential at a time: the superseded one is revoked.
			defer func() {
				if _, err := s.CA.RevokeSerial(ctx, rec.Serial, ca.ReasonSuperseded, "server"); err != nil {
					s.cfg.Log.Warn("cannot revoke superseded bootstrap credential", "serial", rec.Serial, "err", err)
				}
			}()
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	iss, err := s.CA.IssueOperator(ctx, BootstrapAdmin, key.Public(), operatorTTL)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	data := append(iss.ChainPEM(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	s.cfg.Log.Info("wrote bootstrap operator credential", "path", path, "id", iss.Cert.URIs[0].String(), "not_after", iss.Cert.NotAfter)
	return atomicfile.Write(path, data, 0o600)
}

// LoadCredential reads a PEM file holding a certificate chain and its key.
func LoadCredential(path string) (*tls.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	c, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", path, err)
	}
	return &c, nil
}

// Run serves until ctx is done, then shuts down within a grace period.
func (s *Server) Run(ctx context.Context) error {
	api := &http.Server{
		Handler:           s.handler.API(),
		TLSConfig:         s.handler.TLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.serverCert.Load(), nil }),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelDebug),
	}
	pub := &http.Server{
		Handler:           s.handler.Public(promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelDebug),
	}
	api.RegisterOnShutdown(s.handler.StopPolls)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return proxy.Serve(ctx, api, tls.NewListener(s.api, api.TLSConfig)) })
	g.Go(func() error { return proxy.Serve(ctx, pub, s.pub) })
	g.Go(func() error { return s.maintain(ctx) })
	g.Go(func() error { return s.handler.WatchResources(ctx) })
	g.Go(func() error { return s.handler.WatchInstances(ctx) })
	g.Go(func() error { return s.handler.RunRenewals(ctx) })
	g.Go(func() error { return s.lead(ctx) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// maintain renews the server certificate and the bootstrap credential at
// half-life and as soon as a new intermediate issues, so that retiring the
// old one never locks operators or workloads out of the server.
func (s *Server) maintain(ctx context.Context) error {
	t := time.NewTicker(maintainEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if err := s.CA.Sync(ctx); err != nil {
			s.cfg.Log.Warn("cannot sync the CA with the store", "err", err)
		}
		if leaf := s.serverCert.Load().Leaf; time.Until(leaf.NotAfter) < serverCertTTL/2 || hex.EncodeToString(leaf.AuthorityKeyId) != s.CA.IssuerID() {
			if err := s.refreshServerCert(ctx); err != nil {
				s.cfg.Log.Warn("server certificate renewal failed", "err", err)
			}
		}
		if err := s.ensureOperatorCredential(ctx); err != nil {
			s.cfg.Log.Warn("bootstrap credential refresh failed", "err", err)
		}
		if err := s.writeBundle(); err != nil {
			s.cfg.Log.Warn("cannot write the trust bundle", "err", err)
		}
	}
}

// writeBundle keeps <data-dir>/bundle.pem equal to the CA's bundle.
func (s *Server) writeBundle() error {
	path := filepath.Join(s.cfg.DataDir, FileBundle)
	pem := s.CA.Bundle().PEM()
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, pem) {
		return nil
	}
	return atomicfile.Write(path, pem, 0o644)
}

// Close releases the listeners and the store.
func (s *Server) Close() {
	for _, l := range []net.Listener{s.api, s.pub} {
		if l != nil {
			l.Close()
		}
	}
	if s.auditLog != nil {
		if err := s.auditLog.Close(); err != nil {
			s.cfg.Log.Error("closing the audit log", "err", err)
		}
		s.auditLog = nil
	}
	if s.store != nil {
		s.store.Close()
	}
}
