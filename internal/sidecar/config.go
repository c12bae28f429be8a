package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
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
	BodyLimit int64 // bytes
}

// Snapshot is one version of the configuration from the control plane:
// resource documents with the server's version.
type Snapshot = resource.Snapshot

// snapshot is one immutable, validated configuration.
type snapshot struct {
	engine   *policy.Engine
	services map[string]service
	objs     []resource.Object
	sum      [32]byte
	origin   string // the file's path, or the control plane snapshot's name
	version  int64  // the control plane's version; 0 for a file
}

// configWatcher holds the running snapshot and swaps in a new valid one
// when the resource file changes (Run) or the control plane sends one
// (apply). Readers never lock; swaps are serialized by mu.
type configWatcher struct {
	path string // the resource file; empty when snapshots come through apply
	td   spiffeid.TrustDomain
	log  *slog.Logger
	cur  atomic.Pointer[snapshot]
	mu   sync.Mutex
	// events and subject audit reloads (set by New).
	events  audit.Sink
	subject string
}

// newConfigWatcher loads the first snapshot from exactly one of the
// resource file at path and initial.
func newConfigWatcher(path string, initial *Snapshot, td spiffeid.TrustDomain, log *slog.Logger) (*configWatcher, error) {
	w := &configWatcher{path: path, td: td, log: log}
	var snap *snapshot
	var err error
	switch {
	case path != "" && initial != nil:
		return nil, errors.New("both a resource file and a control plane snapshot are configured: the configuration must come from exactly one")
	case path != "":
		snap, err = w.read()
	case initial != nil:
		snap, err = compileSnapshot(*initial, td)
	default:
		return nil, errors.New("no configuration: --config (the resource file with this mesh's Services and AccessPolicies) or a control plane snapshot is required")
	}
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
	return compile(resource.Parse, w.path, data, w.td)
}

// originOf names a control plane snapshot in errors and events.
func originOf(s Snapshot) string {
	if s.Origin != "" {
		return s.Origin
	}
	return fmt.Sprintf("snapshot version %d", s.Version)
}

func compileSnapshot(s Snapshot, td spiffeid.TrustDomain) (*snapshot, error) {
	snap, err := compile(resource.ParseSet, originOf(s), s.Data, td)
	if err != nil {
		return nil, err
	}
	snap.version = s.Version
	return snap, nil
}

// compile parses and validates resource documents into a snapshot; origin
// names them in errors (file:line).
func compile(parse func(string, []byte) ([]resource.Object, error), origin string, data []byte, td spiffeid.TrustDomain) (*snapshot, error) {
	objs, err := parse(origin, data)
	if err != nil {
		return nil, err
	}
	engine, err := policy.Compile(td, objs)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{engine: engine, services: map[string]service{}, objs: objs, sum: sha256.Sum256(data), origin: origin}
	for _, o := range objs {
		if spec, ok := o.Spec.(*resource.ServiceSpec); ok {
			snap.services[o.Metadata.Name] = service{Name: o.Metadata.Name, Protocol: string(spec.Protocol), Endpoints: spec.Endpoints, BodyLimit: spec.Limits.BodyBytes()}
		}
	}
	return snap, nil
}

// swap installs a valid snapshot; requests in flight finish on the old one.
// The caller holds mu.
func (w *configWatcher) swap(snap *snapshot) {
	w.cur.Store(snap)
	w.log.Info("configuration reloaded", "origin", snap.origin, "version", snap.version, "services", len(snap.services))
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
		if s.Version != cur.version { // same configuration, newer name
			same := *cur
			same.origin, same.version = origin, s.Version
			w.cur.Store(&same)
		}
		return nil
	}
	ctx := context.Background() // Apply has no context of its own; the event must not be lost to one
	fields := map[string]string{"origin": origin, "version": strconv.FormatInt(s.Version, 10), "sha256": hex.EncodeToString(sum[:])}
	next, err := compileSnapshot(s, w.td)
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

// Run polls the resource file and applies valid changes until ctx ends. An
// invalid file is refused with its file:line errors and the running
// configuration stays. Without a file (snapshots come through apply) it
// only waits for ctx.
func (w *configWatcher) Run(ctx context.Context) error {
	if w.path == "" {
		<-ctx.Done()
		return nil
	}
	fw := resource.FileWatcher{Path: w.path, Interval: reloadEvery, Log: w.log, Events: w.events, Subject: w.subject}
	cur := w.cur.Load()
	fw.Watch(ctx, cur.sum, cur.objs, func(data []byte) ([]resource.Object, error) {
		snap, err := compile(resource.Parse, w.path, data, w.td)
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
