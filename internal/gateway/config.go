package gateway

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
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
}

// matches reports whether the normalized path p is under the route's prefix.
func (r *route) matches(p string) bool {
	return r.prefix == "/" || p == r.prefix || strings.HasPrefix(p, r.prefix) && p[len(r.prefix)] == '/'
}

// snapshot is one immutable, validated configuration.
type snapshot struct {
	engine   *policy.Engine
	services map[string][]string // endpoints by service
	byHost   map[string][]*route // host -> routes, longest prefix first
	anyHost  []*route            // routes without a host, longest prefix first
	jwt      *authn.Verifier     // nil without Issuers
	objs     []resource.Object
	sum      [32]byte
	cancel   context.CancelFunc // stops jwt's refresh loop
}

// match returns the route for host (lowercase, without port) and the
// normalized path. Routes naming the host take precedence over routes for
// any host; among them the longest prefix wins.
func (s *snapshot) match(host, path string) *route {
	for _, r := range s.byHost[host] {
		if r.matches(path) {
			return r
		}
	}
	for _, r := range s.anyHost {
		if r.matches(path) {
			return r
		}
	}
	return nil
}

// compile parses and validates a resource file into a snapshot.
func compile(path string, data []byte, td spiffeid.TrustDomain, issuerClient *http.Client, log *slog.Logger) (*snapshot, error) {
	objs, err := resource.Parse(path, data)
	if err != nil {
		return nil, err
	}
	engine, err := policy.Compile(td, objs) // validates the whole set too
	if err != nil {
		return nil, err
	}
	snap := &snapshot{engine: engine, services: map[string][]string{}, byHost: map[string][]*route{}, objs: objs, sum: sha256.Sum256(data)}
	var issuers []authn.Issuer
	loopback := false
	for _, o := range objs {
		switch spec := o.Spec.(type) {
		case *resource.ServiceSpec:
			snap.services[o.Metadata.Name] = spec.Endpoints
		case *resource.RouteSpec:
			r := &route{name: o.Metadata.Name, host: spec.Host, prefix: spec.PathPrefix, service: spec.Service, spec: *spec}
			if spec.RateLimit.Rate != "" {
				rate, err := ratelimit.ParseRate(spec.RateLimit.Rate)
				if err != nil { // validated already
					return nil, o.Origin.Errorf("spec.rateLimit.rate", "%v", err)
				}
				r.limit = ratelimit.Limit{Rate: rate, Burst: spec.RateLimit.Burst}
				r.keys = strings.Split(spec.RateLimit.Key, "+")
			}
			if r.host == "" {
				snap.anyHost = append(snap.anyHost, r)
			} else {
				snap.byHost[r.host] = append(snap.byHost[r.host], r)
			}
		case *resource.IssuerSpec:
			leeway, _ := time.ParseDuration(spec.Leeway)
			issuers = append(issuers, authn.Issuer{Name: o.Metadata.Name, IssuerURL: spec.IssuerURL, JWKSURL: spec.JWKSURL,
				Audiences: spec.Audiences, Algorithms: spec.Algorithms, Leeway: leeway})
			loopback = loopback || isLoopbackURL(spec.IssuerURL) || isLoopbackURL(spec.JWKSURL)
		}
	}
	longestFirst := func(a, b *route) int { return cmp.Compare(len(b.prefix), len(a.prefix)) }
	slices.SortStableFunc(snap.anyHost, longestFirst)
	for _, rs := range snap.byHost {
		slices.SortStableFunc(rs, longestFirst)
	}
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

// configWatcher holds the current snapshot and swaps in a new one when the
// file changes and the new one is valid. Readers never lock.
type configWatcher struct {
	path   string
	td     spiffeid.TrustDomain
	client *http.Client
	log    *slog.Logger
	cur    atomic.Pointer[snapshot]
	// events and subject audit reloads (set by New).
	events  audit.Sink
	subject string
	reload  atomic.Int64
}

func newConfigWatcher(path string, td spiffeid.TrustDomain, client *http.Client, log *slog.Logger) (*configWatcher, error) {
	if path == "" {
		return nil, fmt.Errorf("--config is required: the resource file with the Routes, Issuers, Services and AccessPolicies")
	}
	w := &configWatcher{path: path, td: td, client: client, log: log}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("resource file: %w", err)
	}
	snap, err := compile(path, data, td, client, log)
	if err != nil {
		return nil, err
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

// start runs the key refresh loop of a snapshot's JWT verifier.
func (w *configWatcher) start(ctx context.Context, snap *snapshot) {
	if snap.jwt == nil {
		return
	}
	ctx, snap.cancel = context.WithCancel(ctx)
	go func() { _ = snap.jwt.Run(ctx) }()
}

// Run polls the file and applies valid changes until ctx ends. An invalid
// file is refused with its file:line errors and the running configuration
// stays.
func (w *configWatcher) Run(ctx context.Context) error {
	w.start(ctx, w.cur.Load())
	defer func() {
		if c := w.cur.Load().cancel; c != nil {
			c()
		}
	}()
	fw := resource.FileWatcher{Path: w.path, Interval: reloadEvery, Log: w.log, Events: w.events, Subject: w.subject}
	cur := w.cur.Load()
	fw.Watch(ctx, cur.sum, cur.objs, func(data []byte) ([]resource.Object, error) {
		snap, err := compile(w.path, data, w.td, w.client, w.log)
		if err != nil {
			return nil, err
		}
		old := w.cur.Load()
		w.start(ctx, snap)
		w.cur.Store(snap)
		if old.cancel != nil {
			old.cancel()
		}
		w.reload.Add(1)
		w.log.Info("configuration reloaded", "path", w.path, "routes", len(snap.anyHost)+countRoutes(snap.byHost))
		return snap.objs, nil
	})
	return nil
}

func countRoutes(m map[string][]*route) int {
	n := 0
	for _, rs := range m {
		n += len(rs)
	}
	return n
}
