package control

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/store"
)

// How the server learns of instance changes recorded by other servers
// sharing its store: as for resources (snapshot.go), by notification with a
// slow poll behind it, or by a quick poll.
const (
	instancesPollNotified = 5 * time.Second
	instancesPoll         = 250 * time.Millisecond
)

// liveSet is one reading of the registered instances: per service, its
// addresses and the instances version of their last change. A proxy's long
// poll compares the services of its part against the version it last saw,
// so a change wakes only the proxies that reach the service.
type liveSet struct {
	version  int64 // the instances version this reading reflects
	services map[string]liveService
}

type liveService struct {
	changed int64    // instances version of the last change to addrs
	addrs   []string // sorted; none: no live instance (a tombstone)
}

// liveFeed is the newest liveSet and a channel closed when it changes.
type liveFeed struct {
	mu   sync.Mutex
	set  *liveSet
	ch   chan struct{}
	kick chan struct{} // instancesChanged asks the watcher to read now
}

func (f *liveFeed) get() (*liveSet, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == nil {
		f.ch = make(chan struct{})
	}
	if f.set == nil {
		f.set = &liveSet{}
	}
	return f.set, f.ch
}

// publish installs s if it is newer than the current set.
func (f *liveFeed) publish(s *liveSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.set != nil && s.version <= f.set.version {
		return
	}
	f.set = s
	if f.ch != nil {
		close(f.ch)
		f.ch = nil
	}
}

func (f *liveFeed) kicks() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kick == nil {
		f.kick = make(chan struct{}, 1)
	}
	return f.kick
}

// instancesChanged is called after this server changed the instance set
// (to version): the watcher reads the set again at once, so that the
// proxies' long polls answer without waiting for the next poll.
func (h *Handler) instancesChanged(version int64) {
	_ = version // the watcher reads the version and the set together
	select {
	case h.live.kicks() <- struct{}{}:
	default: // a read is pending already; it will see this change
	}
}

// nextLiveSet reads the instances, version first: a set read after its
// version is at least as new as that version, so no change is labelled
// with a version it is not in. Services whose addresses did not change
// keep their version; services that lost every instance stay as
// tombstones, so that the proxies that reached them wake.
func nextLiveSet(ctx context.Context, is store.Instances, prev *liveSet) (*liveSet, error) {
	v, err := is.InstancesVersion(ctx)
	if err != nil || (prev != nil && v <= prev.version) {
		return nil, err
	}
	list, err := is.ListInstances(ctx, "")
	if err != nil {
		return nil, err
	}
	addrs := map[string][]string{}
	for _, in := range list {
		addrs[in.Service] = append(addrs[in.Service], in.Address)
	}
	next := &liveSet{version: v, services: make(map[string]liveService, len(addrs))}
	for svc, a := range addrs {
		slices.Sort(a)
		a = slices.Compact(a)
		changed := v
		if prev != nil {
			if old, ok := prev.services[svc]; ok && slices.Equal(old.addrs, a) {
				changed = old.changed
			}
		}
		next.services[svc] = liveService{changed: changed, addrs: a}
	}
	if prev != nil {
		for svc, old := range prev.services {
			if _, ok := next.services[svc]; ok {
				continue
			}
			if len(old.addrs) == 0 {
				next.services[svc] = old
			} else {
				next.services[svc] = liveService{changed: v}
			}
		}
	}
	return next, nil
}

// WatchInstances keeps the handler's live set current with the store until
// ctx ends: the server runs it beside WatchResources. It does nothing when
// the store keeps no instances.
func (h *Handler) WatchInstances(ctx context.Context) error {
	is, ok := h.Store.(store.Instances)
	if !ok {
		<-ctx.Done()
		return ctx.Err()
	}
	refresh := func() {
		prev, _ := h.live.get()
		next, err := nextLiveSet(ctx, is, prev)
		if err != nil {
			if ctx.Err() == nil {
				h.Log.Warn("cannot read the registered instances", "err", err)
			}
			return
		}
		if next != nil {
			h.live.publish(next)
		}
	}
	refresh()
	every := instancesPoll
	var listener sync.WaitGroup
	defer listener.Wait() // it ends with ctx, as this loop does
	kick := h.live.kicks()
	if n, ok := h.Store.(store.Notifier); ok {
		every = instancesPollNotified
		listener.Go(func() {
			err := n.Listen(ctx, func(string) {
				select {
				case kick <- struct{}{}:
				default:
				}
			}, store.ChannelInstances)
			if ctx.Err() == nil {
				h.Log.Warn("instance notifications stopped; polling", "err", err)
			}
		})
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			refresh()
		case <-kick:
			refresh()
		}
	}
}

// The cursor a proxy long-polls from (SnapshotResponse.Cursor) holds the
// resource version in its high bits and the instances version in its low
// 32: it grows with either, and the server can tell which one the proxy
// has seen.
const cursorShift = 32

func makeCursor(resources, instances int64) int64 {
	return resources<<cursorShift | instances&(1<<cursorShift-1)
}

// splitCursor undoes makeCursor; a negative cursor (none) is -1, -1.
func splitCursor(c int64) (resources, instances int64) {
	if c < 0 {
		return -1, -1
	}
	return c >> cursorShift, c & (1<<cursorShift - 1)
}

// proxyPart is one proxy's part of one resource version, computed once per
// version and proxy: its documents with their static endpoints, and the
// services whose registered instances it learns.
type proxyPart struct {
	objs    []resource.Object
	reaches []string // sorted
}

// touched reports whether an instance of a service the part reaches
// changed after instances version after.
func (p *proxyPart) touched(live *liveSet, after int64) bool {
	for _, svc := range p.reaches {
		if live.services[svc].changed > after {
			return true
		}
	}
	return false
}

// partFor returns (computing once per version) the part of set for the
// proxy kind/name.
func (set *resourceSet) partFor(kind, name string) *proxyPart {
	key := kind + "/" + name
	if p, ok := set.parts.Load(key); ok {
		return p.(*proxyPart)
	}
	p := &proxyPart{}
	if kind == "svc" {
		p.objs = resource.ForSidecar(set.objs, name)
		p.reaches = reachableFrom(set.objs, "/svc/"+name)
	} else {
		p.objs = resource.ForGateway(set.objs, name)
		for _, o := range p.objs {
			if o.Kind == resource.KindService {
				p.reaches = append(p.reaches, o.Metadata.Name)
			}
		}
		slices.Sort(p.reaches)
	}
	actual, _ := set.parts.LoadOrStore(key, p)
	return actual.(*proxyPart)
}

// reachableFrom lists the Services an identity (an ID path, "/svc/orders")
// may call: those with an AccessPolicy in dry-run mode, which lets every
// caller through, or with a rule whose from matches it. A Service without
// a policy denies every call, so its instances are not sent.
func reachableFrom(objs []resource.Object, idPath string) []string {
	services := map[string]bool{}
	for _, o := range objs {
		if o.Kind == resource.KindService {
			services[o.Metadata.Name] = true
		}
	}
	var out []string
	for _, o := range objs {
		p, ok := o.Spec.(*resource.AccessPolicySpec)
		if !ok || o.Kind != resource.KindAccessPolicy || !services[p.Target] || slices.Contains(out, p.Target) {
			continue
		}
		if p.Mode == resource.ModeDryRun || policyAdmits(p, idPath) {
			out = append(out, p.Target)
		}
	}
	slices.Sort(out)
	return out
}

func policyAdmits(p *resource.AccessPolicySpec, idPath string) bool {
	for _, r := range p.Rules {
		for _, from := range r.From {
			if idMatches(from, idPath) {
				return true
			}
		}
	}
	return false
}

// idMatches reports whether a rule's from pattern ("svc/*", "*") matches
// the ID path ("/svc/orders") segment by segment, as the policy engine
// matches callers.
func idMatches(pattern, idPath string) bool {
	if pattern == "*" {
		return true
	}
	pat := strings.Split(pattern, "/")
	got := strings.Split(strings.TrimPrefix(idPath, "/"), "/")
	if len(pat) != len(got) {
		return false
	}
	for i := range pat {
		if pat[i] != "*" && pat[i] != got[i] {
			return false
		}
	}
	return true
}

// withInstances returns the part's documents with the live addresses of
// the services it reaches added to their endpoints (static ones first,
// then the registered ones in order, without repeats). The cached
// documents are not changed.
func (p *proxyPart) withInstances(live *liveSet) []resource.Object {
	out := p.objs
	copied := false
	for i, o := range p.objs {
		spec, ok := o.Spec.(*resource.ServiceSpec)
		if !ok || o.Kind != resource.KindService {
			continue
		}
		if _, reached := slices.BinarySearch(p.reaches, o.Metadata.Name); !reached {
			continue
		}
		addrs := live.services[o.Metadata.Name].addrs
		if len(addrs) == 0 {
			continue
		}
		if !copied {
			out = slices.Clone(p.objs)
			copied = true
		}
		s := *spec
		s.Endpoints = slices.Clone(spec.Endpoints)
		for _, a := range addrs {
			if !slices.Contains(s.Endpoints, a) {
				s.Endpoints = append(s.Endpoints, a)
			}
		}
		out[i].Spec = &s
	}
	return out
}

// liveCount is read by tests and metrics: the live instances known.
func (s *liveSet) liveCount() int {
	n := 0
	for _, svc := range s.services {
		n += len(svc.addrs)
	}
	return n
}
