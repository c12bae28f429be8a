package resource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardsec/ward/internal/audit"
)

// Compiled is one immutable, validated configuration of a proxy: what
// its role made of a resource set (T), with the set itself and where it
// came from.
type Compiled[T any] struct {
	Value   T
	Objs    []Object
	Sum     [32]byte
	Origin  string // the file's path, or the control plane snapshot's name
	Version int64  // the control plane's version; 0 for a file

	gen uint64 // which swap installed Value: a new name for the same data keeps it
}

// ConfigSource configures a Config: where the resources come from and
// what the role makes of them.
type ConfigSource[T any] struct {
	// Exactly one of Path (a resource file, polled every ReloadEvery) and
	// Initial (the control plane's first snapshot; later ones through
	// Apply).
	Path        string
	Initial     *Snapshot
	ReloadEvery time.Duration // default 1s
	// Missing is the error when neither is set, naming what the role needs.
	Missing string
	// Compile makes the role's configuration of a valid set; origin names
	// it in errors (file:line).
	Compile func(origin string, objs []Object) (T, error)
	// Live, when set, runs for as long as a configuration is the current
	// one (a gateway refreshes its issuers' keys); it must return when ctx
	// ends. Requests in flight keep using a replaced configuration.
	Live func(ctx context.Context, v T)
	// Describe adds log attributes of a configuration ("routes", 3).
	Describe func(v T) []any
	Log      *slog.Logger
	Events   audit.Sink // config.reload events; nil: none
	Subject  string     // the proxy's SPIFFE ID, for the events
}

// Config holds a proxy's running configuration and swaps in a new valid
// one when the resource file changes (Run) or the control plane sends one
// (Apply). Readers never lock; swaps are serialized. Gateway and sidecar
// both run one.
type Config[T any] struct {
	src  ConfigSource[T]
	cur  atomic.Pointer[Compiled[T]]
	mu   sync.Mutex
	kick chan struct{} // a swap happened: Run moves Live to the new one
	gen  uint64        // swaps so far; under mu
}

// NewConfig loads the first configuration.
func NewConfig[T any](src ConfigSource[T]) (*Config[T], error) {
	if src.ReloadEvery == 0 {
		src.ReloadEvery = time.Second
	}
	if src.Log == nil {
		src.Log = slog.New(slog.DiscardHandler)
	}
	c := &Config[T]{src: src, kick: make(chan struct{}, 1)}
	var first *Compiled[T]
	var err error
	switch {
	case src.Path != "" && src.Initial != nil:
		return nil, errors.New("both a resource file and a control plane snapshot are configured: the configuration must come from exactly one")
	case src.Path != "":
		data, rerr := os.ReadFile(src.Path)
		if rerr != nil {
			return nil, fmt.Errorf("resource file: %w", rerr)
		}
		first, err = c.compile(Parse, src.Path, data)
	case src.Initial != nil:
		first, err = c.compileSnapshot(*src.Initial)
	default:
		return nil, errors.New(src.Missing)
	}
	if err != nil {
		return nil, err
	}
	c.cur.Store(first)
	return c, nil
}

// Load returns the current configuration.
func (c *Config[T]) Load() *Compiled[T] { return c.cur.Load() }

func (c *Config[T]) compile(parse func(string, []byte) ([]Object, error), origin string, data []byte) (*Compiled[T], error) {
	objs, err := parse(origin, data)
	if err != nil {
		return nil, err
	}
	v, err := c.src.Compile(origin, objs)
	if err != nil {
		return nil, err
	}
	return &Compiled[T]{Value: v, Objs: objs, Sum: sha256.Sum256(data), Origin: origin}, nil
}

// originOf names a control plane snapshot in errors and events.
func originOf(s Snapshot) string {
	if s.Origin != "" {
		return s.Origin
	}
	return fmt.Sprintf("snapshot version %d", s.Version)
}

func (c *Config[T]) compileSnapshot(s Snapshot) (*Compiled[T], error) {
	next, err := c.compile(ParseSet, originOf(s), s.Data)
	if err != nil {
		return nil, err
	}
	next.Version = s.Version
	return next, nil
}

// swap installs a valid configuration. The caller holds mu.
func (c *Config[T]) swap(next *Compiled[T]) {
	c.gen++
	next.gen = c.gen
	c.cur.Store(next)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	attrs := []any{"origin", next.Origin, "version", next.Version}
	if c.src.Describe != nil {
		attrs = append(attrs, c.src.Describe(next.Value)...)
	}
	c.src.Log.Info("configuration reloaded", attrs...)
}

// Apply validates and installs a control plane snapshot, or refuses it
// with its error and keeps the running one; either way it records a
// config.reload event. Data identical to the running configuration's
// changes nothing but the version reported, and records nothing.
func (c *Config[T]) Apply(s Snapshot) error {
	if c.src.Path != "" {
		return fmt.Errorf("the configuration comes from %s: a control plane snapshot cannot be applied", c.src.Path)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.cur.Load()
	origin := originOf(s)
	sum := sha256.Sum256(s.Data)
	if sum == cur.Sum {
		if s.Version != cur.Version { // same configuration, newer name; same Live
			same := *cur
			same.Origin, same.Version = origin, s.Version
			c.cur.Store(&same)
		}
		return nil
	}
	ctx := context.Background() // Apply has no context of its own; the event must not be lost to one
	fields := map[string]string{"origin": origin, "version": strconv.FormatInt(s.Version, 10), "sha256": hex.EncodeToString(sum[:])}
	next, err := c.compileSnapshot(s)
	if err != nil {
		c.src.Log.Error("refusing invalid configuration snapshot; keeping the running configuration", "origin", origin, "version", s.Version, "err", err)
		fields["error"] = err.Error()
		EmitReload(ctx, c.src.Events, c.src.Log, c.src.Subject, "deny", "invalid_config", fields)
		return err
	}
	c.swap(next)
	fields["changes"] = strings.Join(Changes(cur.Objs, next.Objs), " ")
	fields["previous_version"] = strconv.FormatInt(cur.Version, 10)
	fields["previous_sha256"] = hex.EncodeToString(cur.Sum[:])
	EmitReload(ctx, c.src.Events, c.src.Log, c.src.Subject, "allow", "", fields)
	return nil
}

// Run keeps Live running for the current configuration and, with a
// resource file, polls it and applies valid changes, until ctx ends. An
// invalid file is refused with its file:line errors and the running
// configuration stays. Every goroutine it starts has returned when it
// returns.
func (c *Config[T]) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if c.src.Path != "" {
		fw := FileWatcher{Path: c.src.Path, Interval: c.src.ReloadEvery, Log: c.src.Log, Events: c.src.Events, Subject: c.src.Subject}
		cur := c.cur.Load()
		wg.Go(func() {
			fw.Watch(ctx, cur.Sum, cur.Objs, func(data []byte) ([]Object, error) {
				next, err := c.compile(Parse, c.src.Path, data)
				if err != nil {
					return nil, err
				}
				c.mu.Lock()
				c.swap(next)
				c.mu.Unlock()
				return next.Objs, nil
			})
		})
	}
	if c.src.Live == nil {
		<-ctx.Done()
		return nil
	}
	// One Live at a time, for the configuration current now; a swap moves
	// it to the new one. (A same-data Apply keeps Value, so keeps Live.)
	running := ^uint64(0)
	stop := func() {}
	defer func() { stop() }()
	for {
		if cur := c.cur.Load(); cur.gen != running {
			stop()
			lctx, cancel := context.WithCancel(ctx)
			wg.Go(func() { c.src.Live(lctx, cur.Value) })
			stop, running = cancel, cur.gen
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		}
	}
}
