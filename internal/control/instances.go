package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/store"
)

// DefaultInstanceTTL is how long a registered instance lives without a
// renewal; sidecars renew at a third of it.
const DefaultInstanceTTL = 10 * time.Second

// Bounds of a registration.
const (
	maxRegistrationBytes = 8 << 10
	maxInstanceLabels    = 8
	maxLabelKey          = 63
	maxLabelValue        = 253
)

// renewFlushEvery is how often a server writes the renewals it received:
// one statement for all of them, not a write per renewal.
const renewFlushEvery = time.Second

func (h *Handler) instanceTTL() time.Duration {
	if h.InstanceTTL <= 0 {
		return DefaultInstanceTTL
	}
	return h.InstanceTTL
}

// refuseRegistration answers a refused registration (400 malformed, 403
// not the caller's to make) and audits it.
func (h *Handler) refuseRegistration(w http.ResponseWriter, r *http.Request, caller spiffeid.ID, service string, err *httpError) {
	h.denied(r.Context(), audit.Event{Type: "instance.refused", Actor: caller.String(), Service: service, Subject: PathInstances,
		Source: remote(r), Fields: map[string]string{"error": err.msg}}, err)
	h.fail(w, r, err)
}

// checkRegistration validates reg for the caller at remoteIP and returns
// the address to record (an unspecified host replaced by remoteIP).
func checkRegistration(reg *InstanceRegistration, callerService string, remoteIP netip.Addr) (string, *httpError) {
	if reg.Service != callerService {
		return "", &httpError{status: http.StatusForbidden, code: "not_your_service",
			msg: fmt.Sprintf("the SVID of service %q cannot register an instance of %q", callerService, reg.Service)}
	}
	host, port, err := net.SplitHostPort(reg.Address)
	if err != nil {
		return "", badRequest("bad_address", fmt.Sprintf("address %q: want host:port with an IP address", reg.Address))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", badRequest("bad_address", fmt.Sprintf("address %q: port must be 1-65535", reg.Address))
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return "", badRequest("bad_address", fmt.Sprintf("address %q: the host must be an IP address (no name, no zone)", reg.Address))
	}
	ip = ip.Unmap()
	switch {
	case ip.IsUnspecified():
		ip = remoteIP
	case ip != remoteIP:
		return "", &httpError{status: http.StatusForbidden, code: "address_not_caller",
			msg: fmt.Sprintf("address %s: %s is not the caller's own address (%s): a sidecar registers its own", reg.Address, host, remoteIP)}
	}
	if len(reg.Labels) > maxInstanceLabels {
		return "", badRequest("bad_labels", fmt.Sprintf("%d labels: at most %d", len(reg.Labels), maxInstanceLabels))
	}
	for k, v := range reg.Labels {
		if !labelKey(k) {
			return "", badRequest("bad_labels", fmt.Sprintf("label key %q: want 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit", k, maxLabelKey))
		}
		if !labelValue(v) {
			return "", badRequest("bad_labels", fmt.Sprintf("label %s: value must be 1-%d printable characters without spaces", k, maxLabelValue))
		}
	}
	return netip.AddrPortFrom(ip, uint16(n)).String(), nil
}

func labelKey(k string) bool {
	if k == "" || len(k) > maxLabelKey {
		return false
	}
	for i := range len(k) {
		c := k[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

func labelValue(v string) bool {
	if v == "" || len(v) > maxLabelValue {
		return false
	}
	for i := range len(v) {
		if v[i] <= ' ' || v[i] > '~' {
			return false
		}
	}
	return true
}

// remoteIP is the caller's address as this server sees the connection.
func remoteIP(r *http.Request) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

func callerSerial(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return ca.SerialText(r.TLS.PeerCertificates[0].SerialNumber)
}

func instanceOf(in store.Instance, ttl time.Duration) Instance {
	return Instance{ID: in.ID, Service: in.Service, Address: in.Address, SPIFFEID: in.SPIFFEID, Serial: in.Serial, Labels: in.Labels,
		Started: in.Started, Renewed: in.Renewed, Expires: in.Expires, TTL: ttl.String()}
}

func newInstanceID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// registerInstance is POST /v1/instances: a sidecar announces its own
// inbound address under its own service.
func (h *Handler) registerInstance(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	kind, name, ok := proxyKind(caller)
	var reg InstanceRegistration
	if err := decodeLimit(w, r, &reg, maxRegistrationBytes); err != nil {
		var he *httpError
		if errors.As(err, &he) {
			h.refuseRegistration(w, r, caller, "", he)
		} else {
			h.fail(w, r, err)
		}
		return
	}
	if !ok || kind != "svc" {
		h.refuseRegistration(w, r, caller, reg.Service, &httpError{status: http.StatusForbidden, code: "not_sidecar",
			msg: caller.String() + " is not a service's identity (svc/NAME): only sidecars register instances"})
		return
	}
	ip, err := remoteIP(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	addr, he := checkRegistration(&reg, name, ip)
	if he != nil {
		h.refuseRegistration(w, r, caller, reg.Service, he)
		return
	}
	now := time.Now().UTC()
	started := reg.Started.UTC()
	if started.IsZero() || started.After(now) {
		started = now
	}
	ttl := h.instanceTTL()
	in := store.Instance{ID: newInstanceID(), Service: name, Address: addr, SPIFFEID: caller.String(), Serial: callerSerial(r),
		Labels: reg.Labels, Started: started, Renewed: now, Expires: now.Add(ttl)}
	v, err := h.Store.PutInstance(r.Context(), in)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	e := audit.Event{Type: "instance.register", Decision: "allow", Actor: caller.String(), Service: name, Subject: in.ID, Source: remote(r),
		Fields: map[string]string{"address": addr, "serial": in.Serial}}
	h.emit(r.Context(), e)
	h.observe(r.Context(), &e)
	h.instancesChanged(v)
	writeJSON(w, http.StatusCreated, instanceOf(in, ttl))
}

// renewals are the renewals received since the last flush, written in
// one statement (RenewInstances) at most renewFlushEvery apart.
type renewals struct {
	mu      sync.Mutex
	pending []string
}

func (rn *renewals) add(id string) {
	rn.mu.Lock()
	rn.pending = append(rn.pending, id)
	rn.mu.Unlock()
}

func (rn *renewals) take() []string {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	ids := rn.pending
	rn.pending = nil
	return ids
}

// RunRenewals writes the renewals this server received until ctx ends,
// then the last ones.
func (h *Handler) RunRenewals(ctx context.Context) error {
	t := time.NewTicker(renewFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.flushRenewals(context.WithoutCancel(ctx))
			return ctx.Err()
		case <-t.C:
			h.flushRenewals(ctx)
		}
	}
}

func (h *Handler) flushRenewals(ctx context.Context) {
	ids := h.renewed.take()
	if len(ids) == 0 {
		return
	}
	now := time.Now().UTC()
	if _, err := h.Store.RenewInstances(ctx, ids, now, now.Add(h.instanceTTL())); err != nil {
		h.Log.Warn("cannot record instance renewals", "count", len(ids), "err", err)
	}
}

// ownInstance finds the caller's instance id in its service's set.
func (h *Handler) ownInstance(ctx context.Context, caller spiffeid.ID, id string) (store.Instance, *httpError) {
	gone := &httpError{status: http.StatusNotFound, code: CodeInstanceGone, msg: "instance " + id + " is not registered (expired or removed): register again"}
	kind, name, ok := proxyKind(caller)
	if !ok || kind != "svc" {
		return store.Instance{}, gone
	}
	// The live set this server last read answers a renewal without a
	// query; one registered since (or elsewhere) is looked up.
	if live, _ := h.live.get(); live.byID != nil {
		if in, ok := live.byID[id]; ok && in.SPIFFEID == caller.String() {
			return in, nil
		}
	}
	list, err := h.Store.ListInstances(ctx, name)
	if err != nil {
		return store.Instance{}, &httpError{status: http.StatusInternalServerError, code: "internal", msg: "internal error", cause: err}
	}
	for _, in := range list {
		if in.ID == id && in.SPIFFEID == caller.String() {
			return in, nil
		}
	}
	return store.Instance{}, gone
}

// renewInstance is POST /v1/instances/{id}/renew.
func (h *Handler) renewInstance(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	id := r.PathValue("id")
	in, he := h.ownInstance(r.Context(), caller, id)
	if he != nil {
		h.fail(w, r, he)
		return
	}
	ttl := h.instanceTTL()
	if serial := callerSerial(r); serial != "" && serial != in.Serial {
		// The sidecar renewed its SVID: revoking the new one must find
		// the instance too.
		in.Serial = serial
		if _, err := h.Store.PutInstance(r.Context(), in); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	h.renewed.add(id)
	in.Renewed = time.Now().UTC()
	in.Expires = in.Renewed.Add(ttl)
	writeJSON(w, http.StatusOK, instanceOf(in, ttl))
}

// deregisterInstance is DELETE /v1/instances/{id}: a clean stop.
func (h *Handler) deregisterInstance(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	id := r.PathValue("id")
	if _, he := h.ownInstance(r.Context(), caller, id); he != nil {
		h.fail(w, r, he)
		return
	}
	in, err := h.Store.DeleteInstance(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		h.fail(w, r, &httpError{status: http.StatusNotFound, code: CodeInstanceGone, msg: "instance " + id + " is not registered"})
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.emit(r.Context(), audit.Event{Type: "instance.deregister", Decision: "allow", Actor: caller.String(), Service: in.Service, Subject: in.ID,
		Source: remote(r), Fields: map[string]string{"address": in.Address}})
	h.instancesChanged(0)
	w.WriteHeader(http.StatusNoContent)
}

// listInstances is GET /v1/instances?service=S, for operators.
func (h *Handler) listInstances(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	list, err := h.Store.ListInstances(r.Context(), r.URL.Query().Get("service"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ttl := h.instanceTTL()
	out := make([]Instance, len(list))
	for i, in := range list {
		out[i] = instanceOf(in, ttl)
	}
	writeJSON(w, http.StatusOK, out)
}

// ExpireInstances removes, once a second, the instances not renewed within
// their TTL, until ctx ends. The leader runs it. It waits one TTL first:
// a server that just started or took over must give the sidecars time to
// renew with it before it judges them silent.
func (h *Handler) ExpireInstances(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(h.instanceTTL()):
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		h.flushRenewals(ctx) // this server's own renewals count before it judges
		gone, err := h.Store.ExpireInstances(ctx, time.Now())
		if err != nil && ctx.Err() == nil {
			h.Log.Warn("cannot expire instances", "err", err)
		}
		for _, in := range gone {
			h.emit(ctx, audit.Event{Type: "instance.expire", Decision: "allow", Actor: "ward-server", Service: in.Service, Subject: in.ID,
				Fields: map[string]string{"address": in.Address, "renewed": in.Renewed.Format(time.RFC3339Nano)}})
		}
		if len(gone) > 0 {
			h.instancesChanged(0)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// removeRevokedInstances takes the instances registered with revoked
// certificates out of the set at once.
func (h *Handler) removeRevokedInstances(ctx context.Context, caller spiffeid.ID, revoked []store.Certificate) {
	serials := make([]string, len(revoked))
	for i, c := range revoked {
		serials[i] = c.Serial
	}
	gone, err := h.Store.DeleteInstancesBySerial(ctx, serials)
	if err != nil {
		h.Log.Error("cannot remove the instances of revoked certificates; they expire within their TTL", "err", err)
		return
	}
	for _, in := range gone {
		h.emit(ctx, audit.Event{Type: "instance.revoked", Decision: "allow", Actor: caller.String(), Service: in.Service, Subject: in.ID,
			Fields: map[string]string{"address": in.Address, "serial": in.Serial}})
	}
	if len(gone) > 0 {
		h.instancesChanged(0)
	}
}

// InstanceMetrics are the collectors of the registered instances.
func (h *Handler) InstanceMetrics() []prometheus.Collector {
	return []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ward_instances", Help: "Registered live instances, as this server last read them."},
		func() float64 { s, _ := h.live.get(); return float64(s.liveCount()) })}
}
