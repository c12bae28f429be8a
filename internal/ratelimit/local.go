package ratelimit

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

const (
	numShards = 64
	// DefaultMaxKeys is the number of keys a Local tracks when
	// LocalOptions.MaxKeys is zero: a few tens of MiB at most.
	DefaultMaxKeys = 1 << 18
	// evictSample is how many entries a full shard looks at to pick one to
	// forget; cleanSample is how many a non-full shard looks at for expired
	// entries each time it admits a new key.
	evictSample = 8
	cleanSample = 2
)

// LocalOptions configure a Local. The zero value is ready to use.
type LocalOptions struct {
	// MaxKeys bounds how many keys are tracked at once, rounded up to a
	// multiple of 64. Zero means DefaultMaxKeys.
	MaxKeys int
	// Now is the clock; nil means time.Now. Tests inject a fake.
	Now func() time.Time
}

// Local is an in-process GCRA limiter. It is safe for concurrent use, and
// Allow for a key it already tracks does not allocate.
//
// Memory is bounded. A key whose TAT is in the past carries no information
// (it is at its full burst) and is dropped opportunistically whenever a new
// key is admitted, or by Sweep. When MaxKeys keys are tracked and none has
// expired, a new key is still admitted (failing closed for new callers would
// let anyone who fills the table deny service to everyone else) and the
// tracked key nearest to full replenishment, among a few sampled at random,
// is forgotten instead. The cost of that choice is that the forgotten key may
// regain part of its burst early; since it was the one closest to its full
// burst anyway, the error is the smallest a bounded table can make.
type Local struct {
	now      func() time.Time
	epoch    time.Time
	seed     maphash.Seed
	shardCap int
	shards   [numShards]shard
}

type shard struct {
	mu  sync.Mutex
	tat map[string]int64 // theoretical arrival time, ns since Local.epoch
	_   [48]byte         // keep shards on separate cache lines
}

// NewLocal returns an in-process limiter.
func NewLocal(opts LocalOptions) *Local {
	l := &Local{now: opts.Now, seed: maphash.MakeSeed()}
	if l.now == nil {
		l.now = time.Now
	}
	l.epoch = l.now()
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	l.shardCap = (maxKeys + numShards - 1) / numShards
	for i := range l.shards {
		l.shards[i].tat = make(map[string]int64)
	}
	return l
}

// Allow implements Limiter. It never returns an error for a valid Limit.
func (l *Local) Allow(_ context.Context, key string, lim Limit) (Result, error) {
	if err := lim.Validate(); err != nil {
		return Result{}, err
	}
	interval := int64(lim.Rate.Interval())
	now := int64(l.now().Sub(l.epoch))
	s := &l.shards[maphash.String(l.seed, key)%numShards]

	s.mu.Lock()
	tat, ok := s.tat[key]
	newTAT, allowed, remaining, retry, reset := gcra(now, tat, interval, lim.Burst)
	if allowed {
		if ok {
			s.tat[key] = newTAT
		} else {
			s.admit(key, newTAT, now, l.shardCap)
		}
	}
	s.mu.Unlock()
	return result(allowed, remaining, retry, reset, 1), nil
}

// admit stores a new key, first dropping expired entries from a small random
// sample and, if the shard is still full, the sampled entry with the
// earliest TAT. Go randomises where map iteration starts, which makes the
// first few entries a cheap random sample.
func (s *shard) admit(key string, tat, now int64, capacity int) {
	sample := cleanSample
	if len(s.tat) >= capacity {
		sample = evictSample
	}
	var (
		oldest    string
		oldestTAT int64
		found     bool
		seen      int
	)
	for k, t := range s.tat {
		if t <= now {
			delete(s.tat, k)
		} else if !found || t < oldestTAT {
			oldest, oldestTAT, found = k, t, true
		}
		if seen++; seen >= sample {
			break
		}
	}
	if len(s.tat) >= capacity && found {
		delete(s.tat, oldest)
	}
	// Clone so the table never pins a larger buffer the key was cut from.
	s.tat[strings.Clone(key)] = tat
}

// Sweep forgets every key whose limit has fully replenished. It is never
// required for correctness or for the memory bound; call it periodically to
// give memory back sooner after a burst of distinct keys.
func (l *Local) Sweep() {
	now := int64(l.now().Sub(l.epoch))
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, t := range s.tat {
			if t <= now {
				delete(s.tat, k)
			}
		}
		s.mu.Unlock()
	}
}

// Len returns the number of keys tracked.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}
