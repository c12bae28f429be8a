// Package demo is `ward demo`: Ward's front page, everything in one
// process on loopback. It starts a server with its CA on a temporary data
// directory, an edge gateway on https://127.0.0.1:8443 with a certificate
// from that CA, a small OpenID Connect provider, and two sample services,
// catalog and orders, each behind its sidecar, under one resource file of
// routes and policies. Orders starts with a database password from the
// server's vault, read with orders' identity as `ward run` reads it. It
// then runs a short tour of curl and ward commands itself (allowed, denied
// with its reason, rate limited, a lateral call refused, catalog refused
// orders' secret, the audit trail), prints each command with what it
// observed, and serves until Ctrl-C.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/role"
	"github.com/wardsec/ward/internal/sidecar"
	"github.com/wardsec/ward/internal/vault"
)

// DefaultGatewayAddr is where the demo's gateway listens, the address
// the tour's commands use.
const DefaultGatewayAddr = "127.0.0.1:8443"

// Demo runs the tour. Out receives the narration; Log the components' logs.
type Demo struct {
	DataDir string // empty: a temporary directory, removed at the end
	Out     io.Writer
	Log     *slog.Logger
	// Ward runs a ward command in process with args, writing what it
	// prints to out: the tour's ward commands. Required.
	Ward func(ctx context.Context, out io.Writer, args ...string) error
	// Exit after the tour instead of serving until ctx ends (tests).
	Exit bool
	// GatewayAddr is the gateway's HTTPS address; empty: DefaultGatewayAddr.
	// Tests that cannot own port 8443 pass 127.0.0.1:0.
	GatewayAddr string
}

var (
	td        = spiffeid.RequireTrustDomainFromString("demo.ward.local")
	catalogID = spiffeid.RequireFromSegments(td, "svc", "catalog")
)

// tokenTTL is how long the users' tokens stay valid: longer than anyone
// keeps a demo running.
const tokenTTL = 12 * time.Hour

// resources are the routes and policies of the demo, applied to the
// server, which pushes each proxy its part.
const resources = `# Ward demo resources. Change them with: ward --data-dir "$D/server" apply -f "$D/ward.yaml"
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
# No addresses: each sidecar registers its own with its SVID (ward instances).
spec: {}
---
apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {}
---
apiVersion: ward/v1
kind: Issuer
metadata: {name: demo}
spec: {issuerURL: "%[1]s", audiences: [%[2]s], algorithms: [ES256]}
---
apiVersion: ward/v1
kind: Route
metadata: {name: catalog}
spec:
  pathPrefix: /catalog
  service: catalog
  auth: {apiKey: required, user: jwt, issuers: [demo]}
  rateLimit: {key: apikey+user, rate: 3/10s}
---
apiVersion: ward/v1
kind: Route
metadata: {name: orders}
spec:
  pathPrefix: /orders
  service: orders
  auth: {apiKey: required, user: jwt, issuers: [demo]}
  waf: {mode: enforce}
---
# The gateway may read the catalog.
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: catalog-callers}
spec:
  target: catalog
  rules:
    - from: [gateway/edge]
      methods: [GET]
      paths: ["/catalog", "/catalog/*"]
---
# The gateway may read orders for users with the orders:read scope.
# Catalog may read the stock levels orders keeps, and no order: being
# named here, it learns where orders' instances are.
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
    - from: [gateway/edge]
      methods: [GET]
      paths: ["/orders/*"]
      when: '"orders:read" in user.scopes'
    - from: [svc/catalog]
      methods: [GET]
      paths: ["/stock"]
---
# Only orders may read its database password, which the demo stores at
# start and hands to the orders app as ward run does.
apiVersion: ward/v1
kind: SecretPolicy
metadata: {name: orders-db}
spec:
  readers: [svc/orders]
  paths: ["db/orders/*"]
`

// Files of the demo directory that the tour's commands read.
const (
	fileResources = "ward.yaml"
	fileAPIKey    = "apikey"
	fileAlice     = "alice.jwt"
	fileBob       = "bob.jwt"
	// dirRunOrders keeps the identity the orders app's secrets are read
	// with, as `ward run --data-dir` does.
	dirRunOrders = "run-orders"
)

// The orders app's database password: where the vault keeps it and the
// environment variable `ward run` would put it in.
const (
	ordersDBPassword = "db/orders/password"
	envDBPassword    = "DB_PASSWORD"
)

// Run starts everything, walks through the tour, then serves until ctx is
// done (or returns at once with Exit). Everything it started is stopped
// and, without DataDir, its files removed before it returns.
func (d *Demo) Run(ctx context.Context) (err error) {
	start := time.Now()
	if d.Ward == nil {
		return errors.New("demo: Ward, the runner of the tour's ward commands, is not set")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	gwAddr := d.GatewayAddr
	if gwAddr == "" {
		gwAddr = DefaultGatewayAddr
	}
	if err := portFree(gwAddr); err != nil {
		return err
	}
	dir := d.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "ward-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}

	// Everything runs in one errgroup; leaving Run cancels it, waits for
	// every component to stop, then releases what they used. Ctrl-C during
	// the start is a clean exit too.
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	defer func() {
		cancel()
		if werr := g.Wait(); werr != nil && err == nil && !errors.Is(werr, context.Canceled) {
			err = werr
		}
		if parent.Err() != nil {
			err = nil
		}
	}()

	// Each role runs as `ward server|sidecar|gateway` runs it, from the
	// same Config, with its own data directory under dir: its identity,
	// last snapshot and audit spool, shipped to the server's log.
	// started waits for a role to be bound, or for the group to fail.
	started := func(ready <-chan struct{}, what string) error {
		select {
		case <-ready:
			return nil
		case <-gctx.Done():
			if err := g.Wait(); err != nil {
				return err
			}
			return gctx.Err()
		case <-time.After(20 * time.Second):
			return fmt.Errorf("%s did not start within 20s", what)
		}
	}
	serverDir := filepath.Join(dir, "server")
	var srv *control.Server
	srvReady := make(chan struct{})
	server := &role.Server{
		Config: control.ServerConfig{DataDir: serverDir, TrustDomain: td.Name(),
			Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", Log: d.Log.With("role", "server")},
		Ready: func(s *control.Server) { srv = s; close(srvReady) },
	}
	g.Go(func() error { return server.Run(gctx) })
	if err := started(srvReady, "the server"); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	cred, err := control.LoadCredential(filepath.Join(serverDir, control.FileOperator))
	if err != nil {
		return err
	}
	op, err := control.NewClient(srv.URL(), srv.CA.Bundle(), cred)
	if err != nil {
		return err
	}
	defer op.CloseIdleConnections()
	// workload is a proxy role's part that is not the proxy: its join
	// token, its data directory, the server.
	workload := func(id spiffeid.ID, name string) (role.Workload, error) {
		tok, err := op.CreateToken(ctx, id.String(), time.Minute)
		if err != nil {
			return role.Workload{}, err
		}
		return role.Workload{Server: srv.URL(), Bundle: srv.CA.Bundle(), Token: tok.Token,
			DataDir: filepath.Join(dir, name), Log: d.Log}, nil
	}

	idp, err := newIssuer()
	if err != nil {
		return err
	}
	g.Go(func() error { return idp.Run(gctx) })
	alice, err := idp.mint("alice", "orders:read catalog:read", tokenTTL)
	if err != nil {
		return err
	}
	bob, err := idp.mint("bob", "catalog:read", tokenTTL)
	if err != nil {
		return err
	}
	key, err := op.CreateAPIKey(ctx, "shop", []string{"catalog", "orders"}, 0)
	if err != nil {
		return fmt.Errorf("create API key: %w", err)
	}
	for name, secret := range map[string]string{fileAPIKey: key.Key, fileAlice: alice, fileBob: bob} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(secret+"\n"), 0o600); err != nil {
			return err
		}
	}

	// The apps, then their sidecars in front of them. Each sidecar
	// registers its inbound address with the server, which hands it to
	// the callers: nobody writes it down. The listeners are bound here so
	// that the tour can name them.
	catalogApp, err := newApp(catalogHandler())
	if err != nil {
		return err
	}
	g.Go(func() error { return catalogApp.Run(gctx) })
	catalogIn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer catalogIn.Close() // a no-op once its sidecar has closed it
	ordersIn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ordersIn.Close()
	catalogAddr, ordersAddr := catalogIn.Addr().String(), ordersIn.Addr().String()
	// The resources go to the server, which pushes each proxy its part;
	// the file stays in the directory for the user to edit and apply.
	config := filepath.Join(dir, fileResources)
	docs := fmt.Appendf(nil, resources, idp.url, issuerAudience)
	if err := os.WriteFile(config, docs, 0o644); err != nil {
		return err
	}
	if _, err := op.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: config, Data: string(docs)}}}); err != nil {
		return fmt.Errorf("apply the demo's resources: %w", err)
	}

	// Orders' database password: a random value stored by the admin, read
	// with orders' own identity as `ward run --service orders --secret
	// DB_PASSWORD=db/orders/password` reads it, and given to the app,
	// which does not start without it. Nobody prints it.
	if err := storeRandomSecret(ctx, op, ordersDBPassword); err != nil {
		return err
	}
	w, err := workload(spiffeid.RequireFromSegments(td, "svc", "orders"), dirRunOrders)
	if err != nil {
		return fmt.Errorf("orders' secrets: %w", err)
	}
	dbPassword, err := runSecret(ctx, w, "orders", role.SecretRef{Env: envDBPassword, Path: ordersDBPassword})
	if err != nil {
		return fmt.Errorf("the orders app was not started: %w", err)
	}
	ordersHandler, err := ordersHandler(dbPassword, "orders-1")
	clear(dbPassword) // the sample app has no database to open with it
	if err != nil {
		return err
	}
	ordersApp, err := newApp(ordersHandler)
	if err != nil {
		return err
	}
	g.Go(func() error { return ordersApp.Run(gctx) })

	bodies := proxy.NewBodies(proxy.BodyConfig{}) // one body budget for the whole process
	sidecars := map[string]*sidecar.Sidecar{}
	var mu sync.Mutex // sidecars, written by the roles' Ready
	var ready []<-chan struct{}
	for _, s := range []struct {
		name     string
		inbound  net.Listener
		app      string
		outbound string
	}{
		{"catalog", catalogIn, catalogApp.addr(), "127.0.0.1:0"},
		{"orders", ordersIn, ordersApp.addr(), ""},
	} {
		w, err := workload(spiffeid.RequireFromSegments(td, "svc", s.name), "sidecar-"+s.name)
		if err != nil {
			return fmt.Errorf("%s sidecar: %w", s.name, err)
		}
		up := make(chan struct{})
		ready = append(ready, up)
		sc := &role.Sidecar{
			Workload: w,
			Proxy:    sidecar.Config{Service: s.name, Inbound: s.inbound, App: s.app, Outbound: s.outbound, Bodies: bodies},
			Register: &role.Registration{Drain: instanceDrain, Labels: map[string]string{"instance": s.name + "-1"}},
			Ready: func(sc *sidecar.Sidecar) {
				mu.Lock()
				sidecars[s.name] = sc
				mu.Unlock()
				close(up)
			},
		}
		g.Go(func() error { return sc.Run(gctx) })
	}

	// The gateway: an edge certificate for localhost from Ward's CA, and
	// the API key table from the server's key feed.
	w, err = workload(spiffeid.RequireFromSegments(td, "gateway", "edge"), "gateway")
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	keys := new(gateway.KeyTable)
	var gw *gateway.Gateway
	gwReady := make(chan struct{})
	edge := &role.Gateway{
		Workload: w,
		Proxy:    gateway.Config{Name: "edge", Listen: gwAddr, Bodies: bodies},
		Edge:     role.EdgeCert{WardCA: true, Names: []string{"localhost", "127.0.0.1"}},
		APIKeys:  keys,
		Ready:    func(x *gateway.Gateway) { gw = x; close(gwReady) },
	}
	g.Go(func() error { return edge.Run(gctx) })
	for _, up := range append(ready, gwReady) {
		if err := started(up, "a proxy"); err != nil {
			if isAddrInUse(err) {
				return portTaken(gwAddr, err)
			}
			return err
		}
	}
	// The key feed fills the gateway's table shortly after it starts, and
	// the sidecars' registrations reach it through its snapshot.
	for deadline := time.Now().Add(10 * time.Second); keys.Len() <= 0 || len(gw.Endpoints("catalog")) == 0 || len(gw.Endpoints("orders")) == 0; {
		if time.Now().After(deadline) {
			return errors.New("the gateway did not receive the API keys and the services' instances within 10s")
		}
		select {
		case <-gctx.Done():
			if err := g.Wait(); err != nil {
				return err
			}
			return gctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}

	t := &tour{
		dir: dir, gateway: "https://localhost:" + port(gw.Addr()),
		outbound: sidecars["catalog"].OutboundAddr(), ward: d.Ward, endpoints: gw.Endpoints,
	}
	if err := t.init(filepath.Join(serverDir, control.FileBundle)); err != nil {
		return err
	}
	defer t.close()
	d.say("Ward demo: a server, an edge gateway and two services on loopback, started in %s.", time.Since(start).Round(100*time.Millisecond))
	d.say("")
	d.say("  server    %-25s CA of trust domain %s, data in %s", srv.URL(), td.Name(), serverDir)
	d.say("  gateway   %-25s %s, certificate from Ward's CA", t.gateway, gw.ID())
	d.say("  catalog   app %s behind its sidecar %s (registered); the app's outbound proxy is %s", catalogApp.addr(), catalogAddr, t.outbound)
	d.say("  orders    app %s behind its sidecar %s (registered), started with its database password %s,", ordersApp.addr(), ordersAddr, ordersDBPassword)
	d.say("            read from the vault with orders' identity as ward run reads it (identity in %s)", filepath.Join(dir, dirRunOrders))
	d.say("  users     tokens from the demo's identity provider %s: alice (orders:read catalog:read), bob (catalog:read)", idp.url)
	d.say("  policies  %s: the gateway may read catalog, and orders only for users with orders:read;", filepath.Join(dir, fileResources))
	d.say("            catalog may read orders' /stock and no order; only svc/orders may read db/orders/*")
	d.say("  audit     every request recorded in its proxy's spool (%s/{gateway,sidecar-catalog,sidecar-orders}/audit),", dir)
	d.say("            shipped to the server's log %s", filepath.Join(serverDir, control.DirAudit))
	d.say("")
	d.say("The tour: each command below was just run by the demo, and under it is what it got.")
	d.say("Paste them into another shell (curl needed) while the demo runs.")
	d.say("")
	d.say("$ %s", t.setDir())
	for i, s := range t.steps() {
		d.say("")
		d.say("%d. %s", i+1, s.title)
		for _, c := range s.calls {
			got, err := c.run(ctx)
			if err != nil {
				return fmt.Errorf("tour step %d: %w", i+1, err)
			}
			d.say("$ %s", c.cmd)
			for _, line := range strings.Split(strings.TrimRight(got, "\n"), "\n") {
				d.say("  %s", line)
			}
		}
	}
	d.say("")
	d.say("The server holds the resources (%s) and pushes each proxy its part. Change them with", filepath.Join(dir, fileResources))
	d.say("  ward --data-dir \"$D/server\" apply -f \"$D/%s\"     (also: ward get, diff -f, history, rollback)", fileResources)
	d.say("and the gateway and sidecars enforce the new version within a second.")
	if d.DataDir == "" {
		d.say("Ctrl-C stops everything and removes %s.", dir)
	} else {
		d.say("Ctrl-C stops everything.")
	}
	if d.Exit {
		return nil
	}
	<-ctx.Done()
	return nil
}

// storeRandomSecret stores a new random value at path with the admin's
// client, as `ward secret rotate --generate 24` does: 24 random bytes,
// base64url, never printed.
func storeRandomSecret(ctx context.Context, op *control.Client, path string) error {
	value, err := vault.Generate(24)
	if err != nil {
		return err
	}
	defer clear(value)
	if _, err := op.PutSecret(ctx, path, value, false); err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	return nil
}

// runSecret is what `ward run --service NAME --secret ENV=PATH` does
// before it starts an app, in process: the identity spiffe://TD/svc/NAME,
// enrolled with w's token and kept in w's data directory, reads the
// secret. The value is the caller's to wipe.
func runSecret(ctx context.Context, w role.Workload, service string, ref role.SecretRef) ([]byte, error) {
	_, client, err := w.Identity(ctx, role.ServiceID(service))
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()
	sec, err := role.FetchSecrets(ctx, client, []role.SecretRef{ref})
	if err != nil {
		return nil, err
	}
	return sec.Values[ref.Env], nil
}

func (d *Demo) say(format string, a ...any) { fmt.Fprintf(d.Out, format+"\n", a...) }

// portFree fails with a clear message when addr cannot be bound, before
// anything has started.
func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return portTaken(addr, err)
	}
	return l.Close()
}

func portTaken(addr string, err error) error {
	if isAddrInUse(err) {
		return fmt.Errorf("the demo's gateway needs %s, which another program uses (another `ward demo`?): stop it and try again", addr)
	}
	return fmt.Errorf("gateway address %s: %w", addr, err)
}

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
