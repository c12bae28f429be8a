package sidecar

import (
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/detect"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/waf"
)

// service is what the sidecar needs to know of a Service resource.
type service struct {
	Name      string
	Protocol  string // http, grpc or tcp
	Endpoints []string
	BodyLimit int64 // bytes
}

// Snapshot is one version of the configuration from the control plane:
// resource documents with the server's version.
type Snapshot = resource.Snapshot

// snapshot is what the sidecar makes of one valid resource set.
type snapshot struct {
	engine   *policy.Engine
	services map[string]service
	waf      *waf.Guard // this sidecar's Service's inspection; nil: off
	bans     *detect.Bans
}

// newConfig loads the first configuration from exactly one of the
// resource file and the control plane's initial snapshot.
func newConfig(cfg Config, subject string) (*resource.Config[*snapshot], error) {
	// The WAF engine of the last compiled configuration, reused while the
	// service's settings do not change.
	var wafs atomic.Pointer[waf.Cache]
	return resource.NewConfig(resource.ConfigSource[*snapshot]{
		Path: cfg.ConfigFile, Initial: cfg.Initial,
		Missing: "no configuration: --config (the resource file with this mesh's Services and AccessPolicies) or a control plane snapshot is required",
		Compile: func(_ string, objs []resource.Object) (*snapshot, error) {
			engines := wafs.Load().Next()
			snap, err := compile(cfg.TrustDomain, objs, cfg.Service, engines)
			if err == nil {
				wafs.Store(engines)
			}
			return snap, err
		},
		Describe: func(s *snapshot) []any { return []any{"services", len(s.services)} },
		Log:      cfg.Log, Events: cfg.Events, Subject: subject,
	})
}

func compile(td spiffeid.TrustDomain, objs []resource.Object, self string, engines *waf.Cache) (*snapshot, error) {
	engine, err := policy.Compile(td, objs)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{engine: engine, services: map[string]service{}, bans: detect.Compile(objs)}
	for _, o := range objs {
		if spec, ok := o.Spec.(*resource.ServiceSpec); ok {
			snap.services[o.Metadata.Name] = service{Name: o.Metadata.Name, Protocol: string(spec.Protocol), Endpoints: spec.Endpoints, BodyLimit: spec.Limits.BodyBytes()}
			if o.Metadata.Name == self { // only this sidecar's service is inspected here
				if snap.waf, err = waf.NewGuard(engines, spec.WAF.WAFMode(), spec.WAF.WAFOverBound(), spec.WAF.Settings()); err != nil {
					return nil, o.Origin.Errorf("spec.waf", "%v", err)
				}
			}
		}
	}
	return snap, nil
}

// snap returns the running configuration.
func (s *Sidecar) snap() *snapshot { return s.conf.Load().Value }

// endpoints resolves a service for the mesh client.
func (s *Sidecar) endpoints(name string) ([]string, bool) {
	svc, ok := s.snap().services[name]
	return svc.Endpoints, ok
}
