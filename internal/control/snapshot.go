package control

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/store"
)

// How the server learns of resource versions recorded by other servers
// sharing its store: by notification where the store has them (PostgreSQL
// LISTEN/NOTIFY), with a slow poll behind it in case one is lost; by a
// quick poll otherwise.
const (
	resourcePollNotified = 5 * time.Second
	resourcePoll         = 250 * time.Millisecond
)

// versionFeed is the newest resource version this server knows of. Long
// polls wait on it, so N watching proxies cost one store query per change,
// not N per poll interval.
type versionFeed struct {
	mu sync.Mutex
	v  int64
	ch chan struct{} // closed and replaced when v grows
}

// get returns the version and a channel closed when it grows.
func (f *versionFeed) get() (int64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == nil {
		f.ch = make(chan struct{})
	}
	return f.v, f.ch
}

// set raises the version to v; a lower v changes nothing.
func (f *versionFeed) set(v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v <= f.v {
		return
	}
	f.v = v
	if f.ch != nil {
		close(f.ch)
		f.ch = nil
	}
}

// WatchResources keeps the handler's resource version current with the
// store until ctx ends: the server runs it beside its listeners.
func (h *Handler) WatchResources(ctx context.Context) error {
	refresh := func() {
		v, err := h.Store.ResourcesVersion(ctx)
		if err != nil {
			if ctx.Err() == nil {
				h.Log.Warn("cannot read the resource version", "err", err)
			}
			return
		}
		h.resources.set(v)
	}
	refresh()
	every := resourcePoll
	var listener sync.WaitGroup
	defer listener.Wait() // it ends with ctx, as this loop does
	if n, ok := h.Store.(store.Notifier); ok {
		every = resourcePollNotified
		listener.Go(func() {
			err := n.Listen(ctx, func(string) { refresh() }, store.ChannelResources)
			if ctx.Err() == nil {
				h.Log.Warn("resource notifications stopped; polling", "err", err)
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
		}
	}
}

// proxyKind says what a proxy identity is: spiffe://TD/svc/NAME is the
// sidecar of NAME, spiffe://TD/gateway/NAME a gateway.
func proxyKind(id spiffeid.ID) (kind, name string, ok bool) {
	for _, k := range []string{"svc", "gateway"} {
		if n, found := strings.CutPrefix(id.Path(), "/"+k+"/"); found && n != "" && !strings.Contains(n, "/") {
			return k, n, true
		}
	}
	return "", "", false
}

// snapshot is the proxies' long poll: it answers once the resource version
// or the registered instances of a service the caller reaches moved past
// ?after= (a cursor, see makeCursor), or at ?wait=, with the caller's own
// part of the set and the live instances merged into its Services'
// endpoints.
func (h *Handler) snapshot(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	kind, name, ok := proxyKind(caller)
	if !ok {
		err := &httpError{status: http.StatusForbidden, code: "not_proxy", msg: caller.String() + " is neither a sidecar (svc/NAME) nor a gateway (gateway/NAME)"}
		h.denied(r.Context(), audit.Event{Type: "control.snapshot", Actor: caller.String(), Subject: r.URL.Path, Source: remote(r)}, err)
		h.fail(w, r, err)
		return
	}
	after, wait, err := feedQuery(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	afterRes, afterInst := splitCursor(after)
	ctx, cancel := h.pollContext(r, wait)
	defer cancel()
	var set *resourceSet
	for {
		v, resChanged := h.resources.get()
		live, liveChanged := h.live.get()
		if v > afterRes || ctx.Err() != nil {
			break
		}
		if live.version > afterInst {
			if set, err = h.setAt(r.Context(), v); err != nil {
				h.fail(w, r, err)
				return
			}
			if set.partFor(kind, name).touched(live, afterInst) {
				break
			}
		}
		select {
		case <-resChanged:
		case <-liveChanged:
		case <-ctx.Done():
		}
	}
	if r.Context().Err() != nil {
		return // the proxy went away
	}
	v, _ := h.resources.get()
	live, _ := h.live.get()
	if set, err = h.setAt(r.Context(), v); err != nil {
		h.fail(w, r, err)
		return
	}
	part := set.partFor(kind, name)
	writeJSON(w, http.StatusOK, SnapshotResponse{
		Version:   set.version,
		Cursor:    makeCursor(set.version, live.version),
		Documents: string(resource.Marshal(part.withInstances(live))),
	})
}

// setAt returns the parsed resource set of version v or newer: the cached
// one when it is that new, without asking the store, which every woken
// long poll would otherwise do.
func (h *Handler) setAt(ctx context.Context, v int64) (*resourceSet, error) {
	h.resCache.mu.Lock()
	s := h.resCache.set
	h.resCache.mu.Unlock()
	if s != nil && s.version >= v {
		return s, nil
	}
	return h.current(ctx)
}
