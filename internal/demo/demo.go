// Package demo is `ward demo`: Ward's embedded default, everything on
// loopback in one process. Today it shows the identity layer at work: a
// server with its CA, two workloads that enroll with join tokens and talk
// over mutual TLS, an intruder refused, and a revocation that cuts a
// workload off within seconds.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
)

// Demo runs the tour. Out receives the narration; Log the components' logs.
type Demo struct {
	DataDir string // empty: a temporary directory, removed at the end
	Out     io.Writer
	Log     *slog.Logger
	// Exit after the tour instead of serving until ctx ends (tests).
	Exit bool
}

var td = spiffeid.RequireTrustDomainFromString("demo.ward.local")

// Run starts everything, walks through the tour, then serves until ctx is
// done (or returns at once with Exit).
func (d *Demo) Run(ctx context.Context) error {
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dir := d.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "ward-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	defer func() { cancel(); _ = g.Wait() }()

	srv, err := control.NewServer(ctx, control.ServerConfig{
		DataDir: filepath.Join(dir, "server"), TrustDomain: td.Name(),
		Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", Log: d.Log.With("role", "server"),
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	g.Go(func() error { return srv.Run(gctx) })
	dataDir := filepath.Join(dir, "server")
	d.say("1. Ward server up: CA for trust domain %s, API %s, CRL/OCSP on http://%s", td.Name(), srv.URL(), srv.PublicAddr())

	cred, err := control.LoadCredential(filepath.Join(dataDir, control.FileOperator))
	if err != nil {
		return err
	}
	op, err := control.NewClient(srv.URL(), srv.CA.Bundle(), cred)
	if err != nil {
		return err
	}
	enroll := func(name string) (*identity.Source, error) {
		id := spiffeid.RequireFromSegments(td, "svc", name)
		tok, err := op.CreateToken(ctx, id.String(), time.Minute)
		if err != nil {
			return nil, err
		}
		client, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
		if err != nil {
			return nil, err
		}
		src, err := identity.NewSource(identity.Config{TrustDomain: td, Authority: client, Dir: filepath.Join(dir, name), Logger: d.Log.With("role", name)})
		if err != nil {
			return nil, err
		}
		if err := src.SetBundle(srv.CA.Bundle()); err != nil {
			return nil, err
		}
		client.FollowBundle(src.Bundle)
		if err := src.Enroll(ctx, id, tok.Token); err != nil {
			return nil, err
		}
		g.Go(func() error { return src.Run(gctx) })
		sv := src.Current()
		d.say("2. %s enrolled with a one-time join token: serial %s, expires %s", sv.ID, sv.Serial(), sv.Leaf().NotAfter.Format(time.TimeOnly))
		return src, nil
	}
	orders, err := enroll("orders")
	if err != nil {
		return err
	}
	catalog, err := enroll("catalog")
	if err != nil {
		return err
	}
	intruder, err := enroll("intruder")
	if err != nil {
		return err
	}

	// orders accepts mTLS from catalog only.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	app := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, _ := identity.SVIDID(r.TLS.PeerCertificates[0])
			fmt.Fprintf(w, "orders: hello %s\n", id)
		}),
		TLSConfig:         orders.ServerTLSConfig(identity.AuthorizeID(catalog.Current().ID)),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.Log.Handler(), slog.LevelDebug),
	}
	g.Go(func() error {
		if err := app.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	defer app.Close()
	url := "https://" + ln.Addr().String() + "/orders"
	d.say("3. orders listens on %s: mutual TLS 1.3, only %s may call", ln.Addr(), catalog.Current().ID)

	call := func(from *identity.Source) (string, error) {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: from.ClientTLSConfig(identity.AuthorizeID(orders.Current().ID)), DisableKeepAlives: true,
		}}
		resp, err := hc.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	body, err := call(catalog)
	if err != nil {
		return fmt.Errorf("catalog -> orders: %w", err)
	}
	d.say("4. catalog -> orders: allowed, %s", trim(body))
	if _, err := call(intruder); err == nil {
		return errors.New("intruder -> orders was let through")
	} else {
		d.say("5. intruder -> orders: refused at the handshake (%v)", rootCause(err))
	}
	// Plaintext never works.
	if resp, err := http.Get("http://" + ln.Addr().String() + "/orders"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return errors.New("plaintext request reached orders")
		}
	}
	d.say("6. plaintext HTTP to orders: refused")

	revoked, err := op.Revoke(ctx, control.RevokeRequest{ID: catalog.Current().ID.String(), Reason: "keyCompromise"})
	if err != nil {
		return err
	}
	start := time.Now()
	for {
		if _, err := call(catalog); err != nil {
			d.say("7. revoked %s (serial %s): orders refuses it after %s", catalog.Current().ID, revoked.Revoked[0].Serial, time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 10*time.Second {
			return errors.New("revoked catalog still accepted after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.say("\nThe server keeps running. In another shell:\n  export WARD_DATA_DIR=%s\n  ward cert list          # the inventory\n  ward ca show            # root and intermediate\n  curl -s http://%s/metrics | grep ward_ca_\nCtrl-C stops everything.", dataDir, srv.PublicAddr())
	if d.Exit {
		return nil
	}
	<-ctx.Done()
	return nil
}

func (d *Demo) say(format string, a ...any) { fmt.Fprintf(d.Out, format+"\n", a...) }

func trim(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// rootCause unwraps to the innermost error for a one-line explanation.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
