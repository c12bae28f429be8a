package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
)

// instancePort is the port of every registered address: each instance has
// a host address of its own, and nothing ever dials it.
const instancePort = 15000

// instance is one simulated sidecar's registration: its own source
// address, its own connection to the server, its renewal loop.
type instance struct {
	svc    int
	addr   string
	hc     *http.Client
	id     atomic.Value // string
	cancel context.CancelFunc
	done   chan struct{}
}

// registrar registers, renews and deregisters instances against the
// first server, as sidecars do, but with its own HTTP client per
// instance: control.Client cannot pick a source address, and the server
// requires the registered host to be the connection's.
type registrar struct {
	c      config
	base   string
	certs  []*tls.Certificate
	tr     *tracker
	verify func(tls.ConnectionState) error
	nextIP atomic.Int64
	ttlNs  atomic.Int64

	mu   sync.Mutex
	live map[*instance]struct{}
	ops  opCounts
	lat  struct{ reg, renew []time.Duration }
}

// opCounts are the requests the registrar made in the window.
type opCounts struct {
	Registrations   int     `json:"registrations"`
	Renewals        int     `json:"renewals"`
	Deregistrations int     `json:"deregistrations"`
	Errors          int     `json:"errors"`     // refused or failed requests
	Gone            int     `json:"gone"`       // renewals answered instance_gone (expired): registered again
	RegP99ms        float64 `json:"reg_p99_ms"` // registration round trip
	RenewP50ms      float64 `json:"renew_p50_ms"`
	RenewP99ms      float64 `json:"renew_p99_ms"`
}

func newRegistrar(c config, bundle *identity.Bundle, certs []*tls.Certificate, tr *tracker) *registrar {
	serverID, _ := spiffeid.FromSegments(c.td, "ward", "server")
	r := &registrar{c: c, base: c.servers[0], certs: certs, tr: tr, live: map[*instance]struct{}{},
		verify: identity.VerifyPeer(func() *identity.Bundle { return bundle }, nil, identity.AuthorizeID(serverID))}
	r.ttlNs.Store(int64(10 * time.Second))
	return r
}

func (r *registrar) ttl() time.Duration { return time.Duration(r.ttlNs.Load()) }

// hostIP is the n-th source address: 127.1.1.1, 127.1.1.2, ... (never .0
// or .255 in any octet).
func hostIP(n int64) net.IP {
	return net.IPv4(127, byte(1+n/(254*254)), byte(1+(n/254)%254), byte(1+n%254))
}

func (r *registrar) client(ip net.IP, cert *tls.Certificate) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext: d.DialContext,
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{*cert},
			// The server is verified in VerifyConnection against the Ward
			// bundle and its SPIFFE ID, as control.Client does.
			InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
			VerifyConnection:   r.verify,
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
	}}
}

// call makes one request and decodes a JSON answer into out.
func (r *registrar) call(ctx context.Context, hc *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		e := &control.APIError{Status: resp.StatusCode}
		_ = json.Unmarshal(data, &e.Body)
		return e
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (r *registrar) register(ctx context.Context, in *instance) error {
	var got control.Instance
	start := time.Now()
	err := r.call(ctx, in.hc, http.MethodPost, control.PathInstances,
		control.InstanceRegistration{Service: svcName(in.svc), Address: in.addr, Started: time.Now().UTC()}, &got)
	took := time.Since(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.ops.Errors++
		return err
	}
	if got.Address != in.addr || got.ID == "" {
		r.ops.Errors++
		return fmt.Errorf("registered %s as %q (id %q)", in.addr, got.Address, got.ID)
	}
	r.ops.Registrations++
	r.lat.reg = append(r.lat.reg, took)
	in.id.Store(got.ID)
	if d, err := time.ParseDuration(got.TTL); err == nil && d > 0 {
		r.ttlNs.Store(int64(d))
	}
	return nil
}

// start registers a new instance of service svc at a new address and
// keeps it renewed until stop.
func (r *registrar) start(ctx context.Context, svc int) (*instance, error) {
	ip := hostIP(r.nextIP.Add(1) - 1)
	in := &instance{svc: svc, addr: net.JoinHostPort(ip.String(), strconv.Itoa(instancePort)), hc: r.client(ip, r.certs[svc]), done: make(chan struct{})}
	ch := r.tr.newChange(svc, in.addr, true)
	err := r.register(ctx, in)
	r.tr.answer(ch, err)
	if err != nil {
		in.hc.CloseIdleConnections()
		return nil, err
	}
	var rctx context.Context
	rctx, in.cancel = context.WithCancel(ctx)
	r.mu.Lock()
	r.live[in] = struct{}{}
	r.mu.Unlock()
	go r.renew(rctx, in)
	return in, nil
}

// renew renews in every TTL/3, the first time at a random point of the
// first third so that renewals spread evenly; an instance the server has
// expired is registered again.
func (r *registrar) renew(ctx context.Context, in *instance) {
	defer close(in.done)
	t := time.NewTimer(jitter(r.ttl() / 3))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		err := r.call(ctx, in.hc, http.MethodPost, control.PathInstance+url.PathEscape(in.id.Load().(string))+"/renew", nil, nil)
		took := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		var apiErr *control.APIError
		r.mu.Lock()
		switch {
		case err == nil:
			r.ops.Renewals++
			r.lat.renew = append(r.lat.renew, took)
		case errors.As(err, &apiErr) && apiErr.Code() == control.CodeInstanceGone:
			r.ops.Gone++
		default:
			r.ops.Errors++
			failf("renew", "renew %s: %v", in.addr, err)
		}
		r.mu.Unlock()
		if err != nil && apiErr != nil && apiErr.Code() == control.CodeInstanceGone {
			if err := r.register(ctx, in); err != nil && ctx.Err() == nil {
				failf("register again", "register %s again: %v", in.addr, err)
			}
		}
		t.Reset(r.ttl() / 3)
	}
}

// stop ends in's renewals and deregisters it, as a clean stop does.
func (r *registrar) stop(ctx context.Context, in *instance) {
	in.cancel()
	<-in.done
	r.mu.Lock()
	delete(r.live, in)
	r.mu.Unlock()
	ch := r.tr.newChange(in.svc, in.addr, false)
	err := r.call(ctx, in.hc, http.MethodDelete, control.PathInstance+url.PathEscape(in.id.Load().(string)), nil, nil)
	r.tr.answer(ch, err)
	r.mu.Lock()
	if err != nil {
		r.ops.Errors++
		failf("deregister", "deregister %s: %v", in.addr, err)
	} else {
		r.ops.Deregistrations++
	}
	r.mu.Unlock()
	in.hc.CloseIdleConnections()
}

// stopAll ends every renewal loop without deregistering.
func (r *registrar) stopAll() {
	r.mu.Lock()
	live := make([]*instance, 0, len(r.live))
	for in := range r.live {
		live = append(live, in)
	}
	r.mu.Unlock()
	for _, in := range live {
		in.cancel()
		<-in.done
		in.hc.CloseIdleConnections()
	}
}

func (r *registrar) resetCounts() {
	r.mu.Lock()
	r.ops = opCounts{}
	r.lat.reg, r.lat.renew = nil, nil
	r.mu.Unlock()
}

func (r *registrar) counts() opCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.ops
	o.RegP99ms = pct(r.lat.reg, 0.99)
	o.RenewP50ms, o.RenewP99ms = pct(r.lat.renew, 0.5), pct(r.lat.renew, 0.99)
	return o
}
