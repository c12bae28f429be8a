package role

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/sidecar"
	"github.com/wardsec/ward/internal/testport"
)

// mesh is a server role run for a test, with an operator client.
type mesh struct {
	dir string
	srv *control.Server
	op  *control.Client
}

// startServer runs the server role in grp until its ctx ends.
func startServer(t *testing.T, ctx context.Context, grp *errgroup.Group) *mesh {
	t.Helper()
	m := &mesh{dir: t.TempDir()}
	up := make(chan struct{})
	s := &Server{
		Config: control.ServerConfig{DataDir: filepath.Join(m.dir, "server"), TrustDomain: "roles.test",
			Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", Log: quiet()},
		Ready: func(srv *control.Server) { m.srv = srv; close(up) },
	}
	done := make(chan error, 1)
	grp.Go(func() error { err := s.Run(ctx); done <- err; return err })
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("server role: %v", err)
	}
	cred, err := control.LoadCredential(filepath.Join(m.dir, "server", control.FileOperator))
	if err != nil {
		t.Fatal(err)
	}
	if m.op, err = control.NewClient(m.srv.URL(), m.srv.CA.Bundle(), cred); err != nil {
		t.Fatal(err)
	}
	return m
}

// workload is a proxy role's Workload with a fresh join token for id.
func (m *mesh) workload(t *testing.T, ctx context.Context, id, name string) Workload {
	t.Helper()
	tok, err := m.op.CreateToken(ctx, "spiffe://roles.test/"+id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return Workload{Server: m.srv.URL(), Bundle: m.srv.CA.Bundle(), Token: tok.Token, DataDir: filepath.Join(m.dir, name), Log: quiet()}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func freeAddr(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

// TestRolesRecordAndStopWithTheirContext (issue 13 item 1): a server, a
// sidecar and a gateway role, each one Run, make a working mesh whose
// proxies record into their own spools and ship to the server's log;
// cancelling their context ends every Run cleanly with no goroutine left.
func TestRolesRecordAndStopWithTheirContext(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	grp, gctx := errgroup.WithContext(ctx)
	m := startServer(t, gctx, grp)

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-Ward-Peer-Id"))
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

	scUp, gwUp := make(chan struct{}), make(chan *gateway.Gateway, 1)
	sc := &Sidecar{
		Workload: m.workload(t, ctx, "svc/hello", "sidecar"),
		Proxy:    sidecar.Config{Service: "hello", Listen: inbound, App: strings.TrimPrefix(app.URL, "http://")},
		Ready:    func(*sidecar.Sidecar) { close(scUp) },
	}
	gw := &Gateway{
		Workload: m.workload(t, ctx, "gateway/edge", "gateway"),
		Proxy:    gateway.Config{Name: "edge", Listen: "127.0.0.1:0"},
		Edge:     EdgeCert{WardCA: true, Names: []string{"127.0.0.1"}},
		Ready:    func(g *gateway.Gateway) { gwUp <- g },
	}
	grp.Go(func() error { return sc.Run(gctx) })
	grp.Go(func() error { return gw.Run(gctx) })
	var edge *gateway.Gateway
	for _, up := range []<-chan struct{}{scUp} {
		select {
		case <-up:
		case <-gctx.Done():
			t.Fatalf("a role failed to start: %v", grp.Wait())
		}
	}
	select {
	case edge = <-gwUp:
	case <-gctx.Done():
		t.Fatalf("the gateway role failed to start: %v", grp.Wait())
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.srv.CA.Bundle().PEM())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + edge.Addr() + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Header.Get(gateway.HeaderRequestID)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "spiffe://roles.test/gateway/edge") || id == "" {
		t.Fatalf("GET /hello through the gateway: %d %q, request id %q", resp.StatusCode, body, id)
	}

	// Each proxy's spool, then the server's log, holds its record.
	has := func(dir, typ string) bool {
		found := false
		if _, err := audit.Query(ctx, dir, audit.Filter{Type: typ}, func(r audit.Record) error {
			found = found || r.Event.RequestID == id
			return nil
		}); err != nil {
			t.Fatalf("query %s: %v", dir, err)
		}
		return found
	}
	for _, c := range []struct{ dir, typ string }{
		{filepath.Join(m.dir, "gateway", "audit"), "gateway.request"},
		{filepath.Join(m.dir, "sidecar", "audit"), "sidecar.request"},
	} {
		if !has(c.dir, c.typ) {
			t.Errorf("%s: no %s record of request %s", c.dir, c.typ, id)
		}
	}
	serverLog := filepath.Join(m.dir, "server", control.DirAudit)
	for deadline := time.Now().Add(15 * time.Second); !has(serverLog, "gateway.request") || !has(serverLog, "sidecar.request"); {
		if time.Now().After(deadline) {
			t.Fatalf("the server's log lacks the records of request %s after 15s (gateway %v, sidecar %v)", id,
				has(serverLog, "gateway.request"), has(serverLog, "sidecar.request"))
		}
		time.Sleep(100 * time.Millisecond)
	}

	cancel()
	waited := make(chan error, 1)
	go func() { waited <- grp.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("a role's Run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the roles did not stop within 15s of cancel")
	}
	client.CloseIdleConnections()
}

// TestGatewayFailedStartReleasesWhatItOpened (issue 13 item 1): a gateway
// role that cannot bind its address returns the error, leaves no
// goroutine behind, and releases its spool and identity: a second Run on
// the same data directory, without a token, starts.
func TestGatewayFailedStartReleasesWhatItOpened(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	grp, gctx := errgroup.WithContext(ctx)
	m := startServer(t, gctx, grp)
	defer func() {
		cancel()
		if err := grp.Wait(); err != nil {
			t.Errorf("server role: %v", err)
		}
	}()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	gw := &Gateway{
		Workload: m.workload(t, ctx, "gateway/edge", "gateway"),
		Proxy:    gateway.Config{Name: "edge", Listen: busy.Addr().String()},
		Edge:     EdgeCert{WardCA: true, Names: []string{"127.0.0.1"}},
	}
	runCtx, stop := context.WithTimeout(ctx, 20*time.Second)
	defer stop()
	before := goleak.IgnoreCurrent()
	if err := gw.Run(runCtx); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("gateway on a busy address: %v, want address in use", err)
	}
	goleak.VerifyNone(t, before)

	// Again on the same directory: the saved SVID, the same spool.
	gw.Token, gw.Proxy.Listen = "", "127.0.0.1:0"
	up := make(chan struct{})
	gw.Ready = func(*gateway.Gateway) { close(up) }
	done := make(chan error, 1)
	go func() { done <- gw.Run(runCtx) }()
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("second start on the same data directory: %v", err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("gateway Run after cancel: %v", err)
	}
}
