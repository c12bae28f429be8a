package role

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/sidecar"
)

// TestSidecarDrainsOnCleanStop: a sidecar that follows a server registers
// its inbound address; when its context ends it deregisters first (its
// inbound still open), keeps serving for the drain, so that requests in
// flight and requests sent meanwhile all succeed, then closes its inbound
// listener and returns.
func TestSidecarDrainsOnCleanStop(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	grp, gctx := errgroup.WithContext(ctx)
	m := startServer(t, gctx, grp)

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") != "" {
			time.Sleep(700 * time.Millisecond)
		}
		io.WriteString(w, "hello")
	}))
	defer app.Close()
	inbound := freeAddr(t)
	docs := fmt.Sprintf(`apiVersion: ward/v1
kind: Service
metadata: {name: hello}
spec: {endpoints: ["%s"]}
---
apiVersion: ward/v1
kind: Route
metadata: {name: hello}
spec:
  pathPrefix: /hello
  service: hello
  auth: {apiKey: none, user: anonymous}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: hello-callers}
spec:
  target: hello
  rules:
    - from: [gateway/edge]
      methods: [GET]
      paths: ["/hello"]
`, inbound)
	if _, err := m.op.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: "hello.yaml", Data: docs}}}); err != nil {
		t.Fatal(err)
	}

	inboundOpen := func() bool {
		c, err := net.DialTimeout("tcp", inbound, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	f := newFakeRegistrar("10s")
	var openAtDeregister atomic.Bool
	var deregisteredAt atomic.Int64
	f.onDeregister = func() { openAtDeregister.Store(inboundOpen()); deregisteredAt.Store(time.Now().UnixNano()) }
	const drain = 1200 * time.Millisecond
	scUp, gwUp := make(chan struct{}), make(chan *gateway.Gateway, 1)
	sc := &Sidecar{
		Workload:  m.workload(t, ctx, "svc/hello", "sidecar"),
		Proxy:     sidecar.Config{Service: "hello", Listen: inbound, App: strings.TrimPrefix(app.URL, "http://")},
		Ready:     func(*sidecar.Sidecar) { close(scUp) },
		Register:  &Registration{Labels: map[string]string{"version": "v1"}, Drain: drain},
		registrar: f,
	}
	gw := &Gateway{
		Workload: m.workload(t, ctx, "gateway/edge", "gateway"),
		Proxy:    gateway.Config{Name: "edge", Listen: "127.0.0.1:0"},
		Edge:     EdgeCert{WardCA: true, Names: []string{"127.0.0.1"}},
		Ready:    func(g *gateway.Gateway) { gwUp <- g },
	}
	scCtx, scStop := context.WithCancel(gctx)
	defer scStop()
	scDone := make(chan error, 1)
	grp.Go(func() error { err := sc.Run(scCtx); scDone <- err; return err })
	grp.Go(func() error { return gw.Run(gctx) })
	select {
	case <-scUp:
	case <-gctx.Done():
		t.Fatalf("the sidecar failed to start: %v", grp.Wait())
	}
	var edge *gateway.Gateway
	select {
	case edge = <-gwUp:
	case <-gctx.Done():
		t.Fatalf("the gateway failed to start: %v", grp.Wait())
	}
	waitUntil(t, "the sidecar registered", func() bool { _, live, _ := f.state(); return live == 1 })
	f.mu.Lock()
	got := f.live["i1"]
	f.mu.Unlock()
	if got.Service != "hello" || got.Address != inbound || got.Labels["version"] != "v1" || got.Started.IsZero() {
		t.Fatalf("registered %+v, want service hello at %s", got, inbound)
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.srv.CA.Bundle().PEM())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	get := func(q string) error {
		resp, err := client.Get("https://" + edge.Addr() + "/hello" + q)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "hello" {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	}
	if err := get(""); err != nil {
		t.Fatal(err)
	}

	// Requests in flight when the stop comes, and requests sent during
	// the drain, all succeed.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- get("?slow=1") }()
	}
	time.Sleep(100 * time.Millisecond)
	stopped := time.Now()
	scStop()
	sent := 0
	for time.Since(stopped) < drain-300*time.Millisecond {
		wg.Add(1)
		sent++
		go func() { defer wg.Done(); errs <- get("") }()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a request failed during the drain: %v", err)
		}
	}
	if sent < 10 {
		t.Fatalf("only %d requests sent during the drain", sent)
	}
	select {
	case err := <-scDone:
		if err != nil {
			t.Fatalf("sidecar Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sidecar did not stop after its drain")
	}
	took := time.Since(stopped)
	calls, live, _ := f.state()
	if live != 0 || calls[len(calls)-1] != "deregister i1" {
		t.Fatalf("not deregistered: %v", calls)
	}
	if !openAtDeregister.Load() {
		t.Fatal("the inbound listener was closed before the instance was deregistered")
	}
	if d := time.Duration(deregisteredAt.Load() - stopped.UnixNano()); d > 500*time.Millisecond {
		t.Fatalf("deregistered %v after the stop", d)
	}
	if took < drain || took > drain+6*time.Second {
		t.Fatalf("the sidecar stopped %v after its context ended, drain %v", took, drain)
	}
	if inboundOpen() {
		t.Fatal("the inbound listener is still open after Run returned")
	}

	cancel()
	if err := grp.Wait(); err != nil {
		t.Fatalf("roles after cancel: %v", err)
	}
	client.CloseIdleConnections()
}

// TestSidecarSecondSignalCutsDrainShort: with a long drain, closing Hurry
// (the CLI does on a second signal) ends it at once.
func TestSidecarSecondSignalCutsDrainShort(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	grp, gctx := errgroup.WithContext(ctx)
	m := startServer(t, gctx, grp)
	inbound := freeAddr(t)
	doc := fmt.Sprintf("apiVersion: ward/v1\nkind: Service\nmetadata: {name: hello}\nspec: {endpoints: [%q]}\n", inbound)
	if _, err := m.op.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: "hello.yaml", Data: doc}}}); err != nil {
		t.Fatal(err)
	}
	f := newFakeRegistrar("10s")
	hurry := make(chan struct{})
	up := make(chan struct{})
	sc := &Sidecar{
		Workload:  m.workload(t, ctx, "svc/hello", "sidecar"),
		Proxy:     sidecar.Config{Service: "hello", Listen: inbound, App: "127.0.0.1:1"},
		Ready:     func(*sidecar.Sidecar) { close(up) },
		Register:  &Registration{Drain: time.Minute, Hurry: hurry},
		registrar: f,
	}
	scCtx, scStop := context.WithCancel(gctx)
	defer scStop()
	scDone := make(chan error, 1)
	grp.Go(func() error { err := sc.Run(scCtx); scDone <- err; return err })
	select {
	case <-up:
	case <-gctx.Done():
		t.Fatalf("the sidecar failed to start: %v", grp.Wait())
	}
	waitUntil(t, "the sidecar registered", func() bool { _, live, _ := f.state(); return live == 1 })
	scStop()
	waitUntil(t, "the sidecar deregistered", func() bool { _, live, _ := f.state(); return live == 0 })
	select {
	case err := <-scDone:
		t.Fatalf("the sidecar stopped before its drain ended: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cut := time.Now()
	close(hurry)
	select {
	case err := <-scDone:
		if err != nil {
			t.Fatalf("sidecar Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the drain was not cut short")
	}
	if d := time.Since(cut); d > 6*time.Second {
		t.Fatalf("stopped %v after the second signal", d)
	}
	if c, err := net.DialTimeout("tcp", inbound, time.Second); err == nil {
		c.Close()
		t.Fatal("the inbound listener is still open")
	}
	cancel()
	if err := grp.Wait(); err != nil {
		t.Fatalf("roles after cancel: %v", err)
	}
}
