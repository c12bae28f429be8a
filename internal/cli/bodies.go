package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/resource"
)

// bodyFlags are the request-body flags shared by `ward gateway` and
// `ward sidecar`.
type bodyFlags struct {
	budget, buffer, minRate string
	grace                   time.Duration
}

func (b *bodyFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&b.budget, "body-budget", "256MiB", "request body bytes the whole process may buffer at once; past it requests get 503 with Retry-After")
	fl.StringVar(&b.buffer, "body-buffer", "1MiB", "bodies up to this size are received whole before they are forwarded (chunked bodies always are, up to their limit)")
	fl.StringVar(&b.minRate, "body-min-rate", "4KiB", "bytes per second a body must keep up, on average, after --body-grace; slower ones get 408")
	fl.DurationVar(&b.grace, "body-grace", proxy.DefaultBodyGrace, "time a body may take before --body-min-rate applies")
}

// bodies builds the process's body machinery from the flags.
func (b *bodyFlags) bodies() (*proxy.Bodies, error) {
	var cfg proxy.BodyConfig
	for _, f := range []struct {
		name, val string
		dst       *int64
	}{{"--body-budget", b.budget, &cfg.Budget}, {"--body-buffer", b.buffer, &cfg.Buffer}, {"--body-min-rate", b.minRate, &cfg.MinRate}} {
		n, err := resource.ParseSize(f.val)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		if n < 1 {
			return nil, fmt.Errorf("%s: must be at least 1B", f.name)
		}
		*f.dst = n
	}
	if b.grace <= 0 {
		return nil, errors.New("--body-grace: must be positive")
	}
	if cfg.Buffer > cfg.Budget {
		return nil, fmt.Errorf("--body-buffer %s is larger than --body-budget %s", b.buffer, b.budget)
	}
	cfg.Grace = b.grace
	return proxy.NewBodies(cfg), nil
}
