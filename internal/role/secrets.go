package role

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/control"
)

// ServiceID is the identity of service NAME in a trust domain,
// spiffe://TD/svc/NAME: the id function Identity takes for an app started
// with its secrets (`ward run --service NAME`, the demo's orders app).
func ServiceID(name string) func(spiffeid.TrustDomain) (spiffeid.ID, error) {
	return func(td spiffeid.TrustDomain) (spiffeid.ID, error) {
		id, err := spiffeid.FromSegments(td, "svc", name)
		if err != nil {
			return id, fmt.Errorf("service %q: %w", name, err)
		}
		return id, nil
	}
}

// SecretRef is one secret an app receives: the environment variable
// that carries it and the secret's path in the vault.
type SecretRef struct {
	Env, Path string
}

// Secrets are the values read for one start of an app, by environment
// variable name, with the version each came from. Wipe them once the app
// has them.
type Secrets struct {
	Values   map[string][]byte
	Versions map[string]int64
}

// Wipe clears the values in memory.
func (s *Secrets) Wipe() {
	for _, v := range s.Values {
		clear(v)
	}
}

// FetchSecrets reads the newest version of each ref's secret with c, a
// client that presents the workload's SVID (from Identity). The first
// secret that is missing, deleted or refused is named in the error, and
// nothing is returned: an app gets all of its secrets or does not start.
func FetchSecrets(ctx context.Context, c *control.Client, refs []SecretRef) (*Secrets, error) {
	out := &Secrets{Values: map[string][]byte{}, Versions: map[string]int64{}}
	for _, r := range refs {
		sec, err := c.GetSecret(ctx, r.Path, 0)
		if err != nil {
			out.Wipe()
			return nil, fmt.Errorf("secret %s (%s): %w", r.Env, r.Path, err)
		}
		out.Values[r.Env], out.Versions[r.Env] = sec.Value, sec.Version.Version
	}
	return out, nil
}
