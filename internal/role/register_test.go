package role

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/control"
)

// fakeRegistrar is a server's instance API in memory. While down, every
// call fails as an unreachable server would.
type fakeRegistrar struct {
	mu      sync.Mutex
	ttl     string
	down    bool
	live    map[string]control.InstanceRegistration
	next    int
	calls   []string // "register", "renew ID", "deregister ID", in order
	renewed []time.Time
	// onDeregister, when set, runs when a deregistration arrives.
	onDeregister func()
}

func newFakeRegistrar(ttl string) *fakeRegistrar {
	return &fakeRegistrar{ttl: ttl, live: map[string]control.InstanceRegistration{}}
}

var errUnreachable = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func (f *fakeRegistrar) RegisterInstance(_ context.Context, reg control.InstanceRegistration) (control.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "register")
	if f.down {
		return control.Instance{}, errUnreachable
	}
	f.next++
	id := fmt.Sprintf("i%d", f.next)
	f.live[id] = reg
	return control.Instance{ID: id, Service: reg.Service, Address: reg.Address, Labels: reg.Labels, Started: reg.Started, TTL: f.ttl}, nil
}

func (f *fakeRegistrar) RenewInstance(_ context.Context, id string) (control.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "renew "+id)
	if f.down {
		return control.Instance{}, errUnreachable
	}
	reg, ok := f.live[id]
	if !ok {
		return control.Instance{}, &control.APIError{Status: http.StatusNotFound, Body: control.Error{Code: control.CodeInstanceGone, Message: "no such instance"}}
	}
	f.renewed = append(f.renewed, time.Now())
	return control.Instance{ID: id, Service: reg.Service, Address: reg.Address, TTL: f.ttl}, nil
}

func (f *fakeRegistrar) DeregisterInstance(_ context.Context, id string) error {
	f.mu.Lock()
	f.calls = append(f.calls, "deregister "+id)
	delete(f.live, id)
	hook := f.onDeregister
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return nil
}

func (f *fakeRegistrar) state() (calls []string, live int, renewed []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), len(f.live), append([]time.Time(nil), f.renewed...)
}

// expire drops every instance, as the server does with instances past
// their TTL.
func (f *fakeRegistrar) expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.live)
}

func (f *fakeRegistrar) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func TestRegistrationLoop(t *testing.T) {
	f := newFakeRegistrar("600ms")
	f.setDown(true) // the server is down when the sidecar starts
	reg := control.InstanceRegistration{Service: "orders", Address: "127.0.0.1:9443", Labels: map[string]string{"zone": "a"}, Started: time.Now()}
	logs := new(logBuffer)
	r := &registrar{api: f, reg: reg, log: slog.New(slog.NewTextHandler(logs, nil)), minRetry: 20 * time.Millisecond, maxRetry: 80 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Unreachable: it keeps retrying, with backoff capped at 80ms.
	time.Sleep(500 * time.Millisecond)
	calls, live, _ := f.state()
	if live != 0 || len(calls) < 4 || len(calls) > 30 {
		t.Fatalf("while the server is down: %d attempts in 500ms (want several, backed off): %v", len(calls), calls)
	}
	select {
	case err := <-done:
		t.Fatalf("the loop ended while the server was down: %v", err)
	default:
	}
	f.setDown(false)
	waitUntil(t, "registered once the server is back", func() bool { _, live, _ := f.state(); return live == 1 })
	f.mu.Lock()
	got := f.live["i1"]
	f.mu.Unlock()
	if got.Address != reg.Address || got.Service != "orders" || got.Labels["zone"] != "a" || !got.Started.Equal(reg.Started) {
		t.Fatalf("registered %+v, want %+v", got, reg)
	}

	// Renewals every TTL/3 (200ms).
	time.Sleep(1100 * time.Millisecond)
	_, _, renewed := f.state()
	if len(renewed) < 3 || len(renewed) > 7 {
		t.Fatalf("%d renewals in 1.1s with a TTL of 600ms (want about 5)", len(renewed))
	}
	for i := 1; i < len(renewed); i++ {
		if d := renewed[i].Sub(renewed[i-1]); d < 150*time.Millisecond || d > 400*time.Millisecond {
			t.Fatalf("renewal %d came %v after the previous one, want about 200ms", i, d)
		}
	}

	// The server lost it: registered again at the next renewal.
	f.expire()
	waitUntil(t, "registered again after instance_gone", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, ok := f.live["i2"]
		return ok
	})

	// A clean stop deregisters it.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil
	calls, live, _ = f.state()
	if live != 0 || calls[len(calls)-1] != "deregister i2" {
		t.Fatalf("after stop: %d live, last calls %v", live, calls[max(0, len(calls)-3):])
	}
	for msg, want := range map[string]int{"registration failing": 1, "instance registered": 2, "registering again": 1, "instance deregistered": 1} {
		if n := strings.Count(logs.String(), msg); n != want {
			t.Errorf("log %q %d times, want %d (once per change):\n%s", msg, n, want, logs)
		}
	}
	if strings.Count(strings.Join(calls, ","), "deregister") != 1 {
		t.Fatalf("deregistered more than once: %v", calls)
	}
}
