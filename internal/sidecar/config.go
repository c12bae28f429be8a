package sidecar

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/resource"
)

// reloadEvery is how often the resource file is checked for changes.
const reloadEvery = time.Second

// service is what the sidecar needs to know of a Service resource.
type service struct {
	Name      string
	Protocol  string // http, grpc or tcp
	Endpoints []string
}

// snapshot is one immutable, validated configuration.
type snapshot struct {
	engine   *policy.Engine
	services map[string]service
	objs     []resource.Object
	sum      [32]byte
}

// configWatcher holds the current snapshot and swaps in a new one when the
// file changes and the new one is valid. Readers never lock.
type configWatcher struct {
	path string
	td   spiffeid.TrustDomain
	log  *slog.Logger
	cur  atomic.Pointer[snapshot]
	// events and subject audit reloads (set by New).
	events  audit.Sink
	subject string
	// Reloaded is signalled after each successful reload (tests).
	reloads atomic.Int64
}

func newConfigWatcher(path string, td spiffeid.TrustDomain, log *slog.Logger) (*configWatcher, error) {
	if path == "" {
		return nil, fmt.Errorf("--config is required: the resource file with this mesh's Services and AccessPolicies")
	}
	w := &configWatcher{path: path, td: td, log: log}
	snap, err := w.read()
	if err != nil {
		return nil, err
	}
	w.cur.Store(snap)
	return w, nil
}

// endpoints resolves a service for the mesh client.
func (w *configWatcher) endpoints(name string) ([]string, bool) {
	svc, ok := w.cur.Load().services[name]
	return svc.Endpoints, ok
}

// Load returns the current snapshot.
func (w *configWatcher) Load() *snapshot { return w.cur.Load() }

func (w *configWatcher) read() (*snapshot, error) {
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil, fmt.Errorf("resource file: %w", err)
	}
	return compile(w.path, data, w.td)
}

// compile parses and validates a resource file into a snapshot.
func compile(path string, data []byte, td spiffeid.TrustDomain) (*snapshot, error) {
	objs, err := resource.Parse(path, data)
	if err != nil {
		return nil, err
	}
	engine, err := policy.Compile(td, objs)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{engine: engine, services: map[string]service{}, objs: objs, sum: sha256.Sum256(data)}
	for _, o := range objs {
		if spec, ok := o.Spec.(*resource.ServiceSpec); ok {
			snap.services[o.Metadata.Name] = service{Name: o.Metadata.Name, Protocol: string(spec.Protocol), Endpoints: spec.Endpoints}
		}
	}
	return snap, nil
}

// Run polls the file and applies valid changes until ctx ends. An invalid
// file is refused with its file:line errors and the running configuration
// stays.
func (w *configWatcher) Run(ctx context.Context) error {
	fw := resource.FileWatcher{Path: w.path, Interval: reloadEvery, Log: w.log, Events: w.events, Subject: w.subject}
	cur := w.cur.Load()
	fw.Watch(ctx, cur.sum, cur.objs, func(data []byte) ([]resource.Object, error) {
		snap, err := compile(w.path, data, w.td)
		if err != nil {
			return nil, err
		}
		w.cur.Store(snap)
		w.reloads.Add(1)
		w.log.Info("configuration reloaded", "path", w.path, "services", len(snap.services))
		return snap.objs, nil
	})
	return nil
}
