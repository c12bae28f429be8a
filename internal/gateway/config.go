package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/ratelimit"
	"github.com/wardsec/ward/internal/resource"
)

// reloadEvery is how often the resource file is checked for changes.
const reloadEvery = time.Second

// route is a compiled Route.
type route struct {
	name    string
	host    string
	prefix  string
	service string
	spec    resource.RouteSpec
	limit   ratelimit.Limit // zero Rate: no limit
	keys    []string        // rate-limit key kinds
	body    int64           // body limit in bytes
}

// Snapshot is one version of the configuration from the control plane:
// resource documents with the server's version.
type Snapshot = resource.Snapshot

// snapshot is one immutable, validated configuration.
type snapshot struct {
	engine   *policy.Engine
	services map[string][]string          // endpoints by service
	routes   *resource.RouteTable[*route] // the Routes by host and prefix
	jwt      *authn.Verifier              // nil without Issuers
	objs     []resource.Object
	sum      [32]byte
	origin   string             // the file's path, or the control plane snapshot's name
	version  int64              // the control plane's version; 0 for a file
	cancel   context.CancelFunc // stops jwt's refresh loop; set and read under configWatcher.mu
}

// match returns the route for host (lowercase, without port) and the
// normalized path, by the rule of resource.RouteTable: routes naming the
// host take precedence over routes for any host; among them the longest
// prefix wins. The control plane checks developers' changes by the same
// table.
func (s *snapshot) match(host, path string) *route {
	r, _ := s.routes.Match(host, path)
	return r
}

// compile parses and validates resource documents into a snapshot; path
// names them in errors (file:line).
func compile(parse func(string, []byte) ([]resource.Object, error), path string, data []byte, td spiffeid.TrustDomain, issuerClient *http.Client, log *slog.Logger) (*snapshot, error) {
	objs, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	engine, err := policy.Compile(td, objs) // validates the whole set too
	if err != nil {
		return nil, err
	}
	snap := &snapshot{engine: engine, services: map[string][]string{}, objs: objs, sum: sha256.Sum256(data), origin: path}
	var issuers []authn.Issuer
	var routes []*route
	loopback := false
	for _, o := range objs {
		switch spec := o.Spec.(type) {
		case *resource.ServiceSpec:
			snap.services[o.Metadata.Name] = spec.Endpoints
		case *resource.RouteSpec:
			r := &route{name: o.Metadata.Name, host: spec.Host, prefix: spec.PathPrefix, service: spec.Service, spec: *spec, body: spec.Limits.BodyBytes()}
			if spec.RateLimit.Rate != "" {
				rate, err := ratelimit.ParseRate(spec.RateLimit.Rate)
				if err != nil { // validated already
					return nil, o.Origin.Errorf("spec.rateLimit.rate", "%v", err)
				}
				r.limit = ratelimit.Limit{Rate: rate, Burst: spec.RateLimit.Burst}
				r.keys = strings.Split(spec.RateLimit.Key, "+")
			}
			routes = append(routes, r)
		case *resource.IssuerSpec:
			leeway, _ := time.ParseDuration(spec.Leeway)
			issuers = append(issuers, authn.Issuer{Name: o.Metadata.Name, IssuerURL: spec.IssuerURL, JWKSURL: spec.JWKSURL,
				Audiences: spec.Audiences, Algorithms: spec.Algorithms, Leeway: leeway})
			loopback = loopback || isLoopbackURL(spec.IssuerURL) || isLoopbackURL(spec.JWKSURL)
		}
	}
	snap.routes = resource.NewRouteTable(routes, func(r *route) (string, string) { return r.host, r.prefix })
	if len(issuers) > 0 {
		opts := []authn.Option{authn.WithLogger(log)}
		if issuerClient != nil {
			opts = append(opts, authn.WithHTTPClient(issuerClient))
		}
		if loopback { // resource validation allowed http only on loopback
			opts = append(opts, authn.WithInsecureLoopbackHTTP())
		}
		if snap.jwt, err = authn.NewVerifier(issuers, opts...); err != nil {
			return nil, fmt.Errorf("%s: issuers: %w", path, err)
		}
	}
	return snap, nil
}

func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http" && resource.IsLoopbackHost(u.Hostname())
}

// configWatcher holds the running snapshot and swaps in a new valid one
// when the resource file changes (Run) or the control plane sends one
// (apply). Readers never lock; swaps are serialized by mu.
type configWatcher struct {
	path   string // the resource file; empty when snapshots come through apply
	td     spiffeid.TrustDomain
	client *http.Client
	log    *slog.Logger
	cur    atomic.Pointer[snapshot]
	// events and subject audit reloads (set by New).
	events  audit.Sink
	subject string

	mu sync.Mutex
	// loops is Run's context while Run runs, nil otherwise. The snapshots'
	// JWT key refresh loops live as long as Run; it is kept here because a
	// snapshot applied later (apply has no context) starts its loop under it.
	loops context.Context
}

// newConfigWatcher loads the first snapshot from exactly one of the
// resource file at path and initial.
func newConfigWatcher(path string, initial *Snapshot, td spiffeid.TrustDomain, client *http.Client, log *slog.Logger) (*configWatcher, error) {
	w := &configWatcher{path: path, td: td, client: client, log: log}
	var snap *snapshot
	switch {
	case path != "" && initial != nil:
		return nil, errors.New("both a resource file and a control plane snapshot are configured: the configuration must come from exactly one")
	case path != "":
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("resource file: %w", err)
		}
		if snap, err = compile(resource.Parse, path, data, td, client, log); err != nil {
			return nil, err
		}
	case initial != nil:
		var err error
		if snap, err = w.compileSnapshot(*initial); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("no configuration: --config (the resource file with the Routes, Issuers, Services and AccessPolicies) or a control plane snapshot is required")
	}
	w.cur.Store(snap)
	return w, nil
}

// Load returns the current snapshot.
func (w *configWatcher) Load() *snapshot { return w.cur.Load() }

func (w *configWatcher) endpoints(name string) ([]string, bool) {
	eps, ok := w.cur.Load().services[name]
	return eps, ok
}

// originOf names a control plane snapshot in errors and events.
func originOf(s Snapshot) string {
	if s.Origin != "" {
		return s.Origin
	}
	return fmt.Sprintf("snapshot version %d", s.Version)
}

func (w *configWatcher) compileSnapshot(s Snapshot) (*snapshot, error) {
	snap, err := compile(resource.ParseSet, originOf(s), s.Data, w.td, w.client, w.log)
	if err != nil {
		return nil, err
	}
	snap.version = s.Version
	return snap, nil
}

// start runs the key refresh loop of a snapshot's JWT verifier while Run
// runs. The caller holds mu.
func (w *configWatcher) start(snap *snapshot) {
	if snap.jwt == nil || w.loops == nil {
		return
	}
	var ctx context.Context
	ctx, snap.cancel = context.WithCancel(w.loops)
	go func() { _ = snap.jwt.Run(ctx) }()
}

// swap installs a valid snapshot: it starts the new snapshot's refresh
// loop, swaps, then stops the old one's. Requests in flight finish on the
// old snapshot (its verifier still verifies; it only stops refreshing).
// The caller holds mu.
func (w *configWatcher) swap(snap *snapshot) {
	old := w.cur.Load()
	w.start(snap)
	w.cur.Store(snap)
	if old.cancel != nil {
		old.cancel()
	}
	w.log.Info("configuration reloaded", "origin", snap.origin, "version", snap.version, "routes", snap.routes.Len())
}

// apply validates and installs a control plane snapshot, or refuses it
// with its error and keeps the running one; either way it records a
// config.reload event. Data identical to the running snapshot's changes
// nothing but the version reported, and records nothing.
func (w *configWatcher) apply(s Snapshot) error {
	if w.path != "" {
		return fmt.Errorf("the configuration comes from %s: a control plane snapshot cannot be applied", w.path)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.cur.Load()
	origin := originOf(s)
	sum := sha256.Sum256(s.Data)
	if sum == cur.sum {
		if s.Version != cur.version { // same configuration, newer name; same verifier and loop
			same := *cur
			same.origin, same.version = origin, s.Version
			w.cur.Store(&same)
		}
		return nil
	}
	ctx := context.Background() // apply has no context of its own; the event must not be lost to one
	fields := map[string]string{"origin": origin, "version": strconv.FormatInt(s.Version, 10), "sha256": hex.EncodeToString(sum[:])}
	next, err := w.compileSnapshot(s)
	if err != nil {
		w.log.Error("refusing invalid configuration snapshot; keeping the running configuration", "origin", origin, "version", s.Version, "err", err)
		fields["error"] = err.Error()
		resource.EmitReload(ctx, w.events, w.log, w.subject, "deny", "invalid_config", fields)
		return err
	}
	w.swap(next)
	fields["changes"] = strings.Join(resource.Changes(cur.objs, next.objs), " ")
	fields["previous_version"] = strconv.FormatInt(cur.version, 10)
	fields["previous_sha256"] = hex.EncodeToString(cur.sum[:])
	resource.EmitReload(ctx, w.events, w.log, w.subject, "allow", "", fields)
	return nil
}

// Run keeps the JWT key refresh loops running and, with a resource file,
// polls it and applies valid changes, until ctx ends. An invalid file is
// refused with its file:line errors and the running configuration stays.
func (w *configWatcher) Run(ctx context.Context) error {
	w.mu.Lock()
	w.loops = ctx
	w.start(w.cur.Load())
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.loops = nil
		if c := w.cur.Load().cancel; c != nil {
			c()
		}
	}()
	if w.path == "" {
		<-ctx.Done()
		return nil
	}
	fw := resource.FileWatcher{Path: w.path, Interval: reloadEvery, Log: w.log, Events: w.events, Subject: w.subject}
	cur := w.cur.Load()
	fw.Watch(ctx, cur.sum, cur.objs, func(data []byte) ([]resource.Object, error) {
		snap, err := compile(resource.Parse, w.path, data, w.td, w.client, w.log)
		if err != nil {
			return nil, err
		}
		w.mu.Lock()
		w.swap(snap)
		w.mu.Unlock()
		return snap.objs, nil
	})
	return nil
}
