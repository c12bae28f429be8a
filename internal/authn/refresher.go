package authn

import (
	"context"
	"sync"
)

// Refresher runs the key refresh loop ([Verifier.Run]) of the current
// verifier of a configuration that is replaced on reload. It runs one loop
// at a time: a replaced verifier's loop has ended before the next one
// starts, and Run returns only once its loop has, so whoever runs the
// Refresher (in its errgroup) waits for every loop. Requests in flight on
// a replaced verifier still verify with its keys; only its refreshing
// stops. The zero value is ready; Set may be called before, during or
// after Run.
type Refresher struct {
	mu      sync.Mutex
	cur     *Verifier
	changed chan struct{} // one pending wake-up for Run
}

// Set makes v the verifier whose keys are refreshed; nil stops refreshing.
func (r *Refresher) Set(v *Verifier) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur = v
	select {
	case r.wake() <- struct{}{}:
	default: // Run has a wake-up pending already
	}
}

// wake returns the channel that wakes Run; r.mu must be held.
func (r *Refresher) wake() chan struct{} {
	if r.changed == nil {
		r.changed = make(chan struct{}, 1)
	}
	return r.changed
}

// Run refreshes the current verifier's keys until ctx ends, restarting the
// loop on each Set. It returns nil once ctx has ended and the loop with it.
func (r *Refresher) Run(ctx context.Context) error {
	for {
		r.mu.Lock()
		v, changed := r.cur, r.wake()
		select {
		case <-changed: // a Set before this one: v is already its verifier
		default:
		}
		r.mu.Unlock()
		loop, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		if v != nil {
			wg.Go(func() { _ = v.Run(loop) })
		}
		select {
		case <-ctx.Done():
		case <-changed:
		}
		stop()
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
	}
}
