// Package role runs Ward's long-running roles: the server, the edge
// gateway and the mesh sidecar. Each role is a configuration value with
// one Run(ctx) that owns everything the role needs under one errgroup:
// the workload identity (enrolled or reloaded, then renewed), the
// follower of the server's snapshots, the durable audit spool and its
// shipper, the edge certificate source and the proxy itself. Run returns
// when ctx ends or a part fails, with every goroutine it started stopped
// and every file and listener it opened released.
//
// `ward server|gateway|sidecar` fill in these values from their flags, and
// `ward demo` fills in the same values for the roles it hosts in one
// process: there is one way to assemble a role.
package role

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
)

// Workload is what a proxy role (gateway, sidecar) shares: how it finds
// the server, where it keeps its state and how it records.
type Workload struct {
	// Server is the server's API URL; Bundle the trust bundle to reach it
	// with (kept current from the server afterwards).
	Server string
	Bundle *identity.Bundle
	// Token is the one-time join token for the first start; later starts
	// reload the SVID kept in DataDir while it is valid.
	Token string
	// DataDir keeps the SVID, the last good snapshot and the audit
	// spool's cursor. Required.
	DataDir string
	// AuditDir is the local audit spool; default DataDir/audit.
	AuditDir string
	// AuditSyncInterval is how long a request record may wait for its
	// fsync (0: audit.DefaultSyncInterval; audit.SyncAlways: fsynced before
	// the request goes on). A record is in the spool file before the
	// request is forwarded either way, so it survives a crash of the
	// process; a power loss may take the last interval.
	AuditSyncInterval time.Duration
	// AuditFailOpen serves requests that cannot be recorded (a risk: the
	// trail gets gaps). By default they fail.
	AuditFailOpen bool
	// FlowInterval is how often the proxy ships its flow counters (see
	// package flows); 0: DefaultFlowInterval.
	FlowInterval time.Duration
	// Log receives the role's logs; nil: none.
	Log *slog.Logger
}

func (w Workload) logger() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}

// source enrolls (or reloads) the workload identity id, keeps it in
// DataDir and returns it with a server client that follows its credential
// and bundle. The caller closes the client's idle connections when its
// Run ends.
func (w Workload) source(ctx context.Context, id func(spiffeid.TrustDomain) (spiffeid.ID, error), log *slog.Logger) (_ *identity.Source, _ *control.Client, err error) {
	if w.Server == "" || w.Bundle == nil || w.DataDir == "" {
		return nil, nil, errors.New("a proxy role needs the server's URL, the trust bundle and a data directory")
	}
	client, err := control.NewClient(w.Server, w.Bundle, nil)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			client.CloseIdleConnections() // enrollment may have connected
		}
	}()
	src, err := identity.NewSource(identity.Config{TrustDomain: w.Bundle.TrustDomain, Authority: client, Dir: w.DataDir, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	if err := src.SetBundle(w.Bundle); err != nil {
		return nil, nil, err
	}
	client.FollowBundle(src.Bundle)
	wid, err := id(w.Bundle.TrustDomain)
	if err != nil {
		return nil, nil, err
	}
	if err := src.LoadOrEnroll(ctx, wid, w.Token); err != nil {
		return nil, nil, err
	}
	client.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	return src, client, nil
}

// Identity is source for a process that runs no proxy role (`ward run`):
// the workload identity id, enrolled with Token or reloaded from DataDir
// as a sidecar's is, and a server client that presents it.
func (w Workload) Identity(ctx context.Context, id func(spiffeid.TrustDomain) (spiffeid.ID, error)) (*identity.Source, *control.Client, error) {
	return w.source(ctx, id, w.logger())
}

// ignoreCanceled is nil for the clean exit of a part whose ctx ended.
func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

var _ audit.Sink = (*spool)(nil)
