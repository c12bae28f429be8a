package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/detect"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/ratelimit"
	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/waf"
)

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
	waf     *waf.Guard      // nil: off
}

// Snapshot is one version of the configuration from the control plane:
// resource documents with the server's version.
type Snapshot = resource.Snapshot

// snapshot is what the gateway makes of one valid resource set.
type snapshot struct {
	engine   *policy.Engine
	services map[string][]string          // endpoints by service
	routes   *resource.RouteTable[*route] // the Routes by host and prefix
	jwt      *authn.Verifier              // nil without Issuers
	bans     *detect.Bans
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

// newConfig loads the first configuration from exactly one of the
// resource file and the control plane's initial snapshot. While a
// configuration is current, its issuers' keys are refreshed.
func newConfig(cfg Config, subject string) (*resource.Config[*snapshot], error) {
	// The WAF engines of the last compiled configuration: the next one
	// reuses those whose settings did not change.
	var wafs atomic.Pointer[waf.Cache]
	return resource.NewConfig(resource.ConfigSource[*snapshot]{
		Path: cfg.ConfigFile, Initial: cfg.Initial,
		Missing: "no configuration: --config (the resource file with the Routes, Issuers, Services and AccessPolicies) or a control plane snapshot is required",
		Compile: func(origin string, objs []resource.Object) (*snapshot, error) {
			engines := wafs.Load().Next()
			snap, err := compile(origin, objs, cfg.TrustDomain, cfg.IssuerClient, cfg.Log, engines)
			if err == nil {
				wafs.Store(engines)
			}
			return snap, err
		},
		Live: func(ctx context.Context, s *snapshot) {
			if s.jwt != nil {
				_ = s.jwt.Run(ctx)
			}
		},
		Describe: func(s *snapshot) []any { return []any{"routes", s.routes.Len()} },
		Log:      cfg.Log, Events: cfg.Events, Subject: subject,
	})
}

// compile makes the gateway's configuration of a valid resource set;
// path names it in errors.
func compile(path string, objs []resource.Object, td spiffeid.TrustDomain, issuerClient *http.Client, log *slog.Logger, engines *waf.Cache) (*snapshot, error) {
	engine, err := policy.Compile(td, objs) // validates the whole set too
	if err != nil {
		return nil, err
	}
	snap := &snapshot{engine: engine, services: map[string][]string{}, bans: detect.Compile(objs)}
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
			g, err := waf.NewGuard(engines, spec.WAF.WAFMode(), spec.WAF.WAFOverBound(), spec.WAF.Settings())
			if err != nil { // validated already
				return nil, o.Origin.Errorf("spec.waf", "%v", err)
			}
			r.waf = g
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

// snap returns the running configuration.
func (g *Gateway) snap() *snapshot { return g.conf.Load().Value }

// endpoints resolves a service for the mesh client.
func (g *Gateway) endpoints(name string) ([]string, bool) {
	eps, ok := g.snap().services[name]
	return eps, ok
}
