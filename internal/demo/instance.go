package demo

import (
	"context"
	"encoding/json"
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
	"github.com/wardsec/ward/internal/role"
	"github.com/wardsec/ward/internal/sidecar"
)

// instanceDrain is how long a demo sidecar keeps serving after it
// deregistered on a clean stop: the default of `ward sidecar --drain`.
const instanceDrain = 2 * time.Second

// Instance runs one more instance of a demo service beside the demo
// running in dir, until ctx ends: the service's app and a sidecar in front
// of it that registers with the demo's server, as `ward sidecar` does
// (role.Sidecar with a Registration). When ctx ends the sidecar
// deregisters, serves for the drain, and stops. name tells the instance
// apart in the app's answers ("orders-2"); out receives one line once it
// is registered.
func Instance(ctx context.Context, dir, service, name string, out io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	serverDir := filepath.Join(dir, "server")
	var info control.ClientInfo
	b, err := os.ReadFile(filepath.Join(serverDir, control.FileClient))
	if err != nil {
		return fmt.Errorf("no demo running in %s (start one with ward demo --dir): %w", dir, err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(serverDir, control.FileClient), err)
	}
	pem, err := os.ReadFile(filepath.Join(serverDir, control.FileBundle))
	if err != nil {
		return err
	}
	bundle, err := identity.ParseBundlePEM(td, pem)
	if err != nil {
		return err
	}
	cred, err := control.LoadCredential(filepath.Join(serverDir, control.FileOperator))
	if err != nil {
		return err
	}
	op, err := control.NewClient(info.Server, bundle, cred)
	if err != nil {
		return err
	}
	defer op.CloseIdleConnections()
	id, err := spiffeid.FromSegments(td, "svc", service)
	if err != nil {
		return fmt.Errorf("service %q: %w", service, err)
	}
	workload := func(sub string) (role.Workload, error) {
		tok, err := op.CreateToken(ctx, id.String(), time.Minute)
		if err != nil {
			return role.Workload{}, err
		}
		return role.Workload{Server: info.Server, Bundle: bundle, Token: tok.Token, DataDir: filepath.Join(dir, sub), Log: log}, nil
	}

	var h http.Handler
	switch service {
	case "catalog":
		h = catalogHandler()
	case "orders":
		// Like the first instance, it starts only with its password.
		w, err := workload("run-" + name)
		if err != nil {
			return err
		}
		pw, err := runSecret(ctx, w, service, role.SecretRef{Env: envDBPassword, Path: ordersDBPassword})
		if err != nil {
			return fmt.Errorf("%s was not started: %w", name, err)
		}
		h, err = ordersHandler(pw, name)
		clear(pw)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("the demo has no service %q (catalog, orders)", service)
	}
	app, err := newApp(h)
	if err != nil {
		return err
	}
	in, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	w, err := workload("sidecar-" + name)
	if err != nil {
		in.Close()
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return app.Run(gctx) })
	sc := &role.Sidecar{
		Workload: w,
		Proxy:    sidecar.Config{Service: service, Inbound: in, App: app.addr()},
		Register: &role.Registration{Drain: instanceDrain, Labels: map[string]string{"instance": name}},
	}
	g.Go(func() error { return sc.Run(gctx) })
	g.Go(func() error { // say so once the server lists it
		for {
			list, err := op.Instances(gctx, service)
			if err == nil {
				for _, i := range list {
					if i.Labels["instance"] == name {
						fmt.Fprintf(out, "%s registered: %s at %s\n", name, i.ID, i.Address)
						return nil
					}
				}
			}
			select {
			case <-gctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return g.Wait()
}
