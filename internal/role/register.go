package role

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/wardsec/ward/internal/control"
)

// Registration makes a sidecar that follows a server an instance of its
// service: it registers the sidecar's inbound address with the sidecar's
// SVID once the listener is bound, renews it while the sidecar runs, and
// on a clean stop deregisters it and drains.
type Registration struct {
	// Advertise is the host:port callers reach the inbound listener at;
	// empty: the listener's own address (an unspecified host, 0.0.0.0 or
	// ::, is replaced by the server with the address it sees the sidecar
	// connect from).
	Advertise string
	// Labels describe the instance (version, zone).
	Labels map[string]string
	// Drain is how long the sidecar keeps serving inbound after it
	// deregistered on a clean stop, so that the server's new endpoint set
	// reaches every caller first; 0: none.
	Drain time.Duration
	// Hurry, when it closes (a second signal), cuts the drain short.
	Hurry <-chan struct{}
}

// Registrar is the server's instance API, as the registration loop uses
// it. *control.Client is the real one.
type Registrar interface {
	RegisterInstance(ctx context.Context, reg control.InstanceRegistration) (control.Instance, error)
	RenewInstance(ctx context.Context, id string) (control.Instance, error)
	DeregisterInstance(ctx context.Context, id string) error
}

var _ Registrar = (*control.Client)(nil)

// Timings of the registration loop.
const (
	// defaultInstanceTTL is assumed when the server's answer carries no
	// TTL that parses (the server's default).
	defaultInstanceTTL = 10 * time.Second
	// deregisterTimeout bounds the deregistration on a clean stop: a
	// server that does not answer lets the instance expire by its TTL.
	deregisterTimeout = 2 * time.Second
	minRetry          = 500 * time.Millisecond
	maxRetry          = 30 * time.Second
)

// registrar keeps one instance registered until its context ends, then
// deregisters it.
type registrar struct {
	api Registrar
	reg control.InstanceRegistration
	log *slog.Logger
	// minRetry and maxRetry bound the backoff while the server cannot be
	// reached or refuses (defaults minRetry, maxRetry).
	minRetry, maxRetry time.Duration
}

// Run registers, renews at a third of the TTL, registers again when the
// server lost the instance, and retries with capped, jittered backoff
// while the server is unreachable; it never fails. When ctx ends it
// deregisters (within deregisterTimeout) and returns.
func (r *registrar) Run(ctx context.Context) error {
	minWait, maxWait := r.minRetry, r.maxRetry
	if minWait <= 0 {
		minWait = minRetry
	}
	if maxWait < minWait {
		maxWait = max(minWait, maxRetry)
	}
	var id string
	failing := false // logged once per change, not per attempt
	retry := minWait
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			r.deregister(ctx, id)
			return nil
		case <-timer.C:
		}
		var inst control.Instance
		var err error
		if id == "" {
			inst, err = r.api.RegisterInstance(ctx, r.reg)
		} else {
			inst, err = r.api.RenewInstance(ctx, id)
			if instanceGone(err) {
				r.log.Warn("the server no longer has this instance: registering again", "instance", id)
				id = ""
				inst, err = r.api.RegisterInstance(ctx, r.reg)
			}
		}
		if ctx.Err() != nil {
			if err == nil {
				id = inst.ID
			}
			continue // deregisters
		}
		if err != nil {
			if !failing {
				r.log.Warn("instance registration failing: retrying, serving meanwhile", "instance", id, "err", err)
				failing = true
			}
			// Full jitter over [retry/2, retry), doubling up to maxWait.
			timer.Reset(retry/2 + rand.N(retry/2+1))
			retry = min(2*retry, maxWait)
			continue
		}
		ttl, perr := time.ParseDuration(inst.TTL)
		if perr != nil || ttl <= 0 {
			ttl = defaultInstanceTTL
		}
		if failing || id != inst.ID {
			r.log.Info("instance registered", "instance", inst.ID, "address", inst.Address, "ttl", ttl)
		}
		id, failing, retry = inst.ID, false, minWait
		timer.Reset(ttl / 3)
	}
}

// deregister removes instance id (if any) from the server, bounded by
// deregisterTimeout.
func (r *registrar) deregister(ctx context.Context, id string) {
	if id == "" {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deregisterTimeout)
	defer cancel()
	if err := r.api.DeregisterInstance(dctx, id); err != nil && !instanceGone(err) {
		r.log.Warn("instance not deregistered: it expires by its TTL", "instance", id, "err", err)
		return
	}
	r.log.Info("instance deregistered", "instance", id)
}

// instanceGone reports the server's answer that it no longer has an
// instance.
func instanceGone(err error) bool {
	var ae *control.APIError
	return errors.As(err, &ae) && ae.Code() == control.CodeInstanceGone
}
