package ratelimit

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLocalGCRA walks one key through a burst, denials with exact
// Retry-After, steady-rate refill and full replenishment.
func TestLocalGCRA(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now})
	lim := Limit{Rate: mustRate(t, "10/s"), Burst: 3} // one per 100ms
	ms := time.Millisecond
	steps := []struct {
		name      string
		advance   time.Duration
		allowed   bool
		remaining int
		retry     time.Duration
		reset     time.Duration
	}{
		{"burst 1", 0, true, 2, 0, 100 * ms},
		{"burst 2", 0, true, 1, 0, 200 * ms},
		{"burst 3", 0, true, 0, 0, 300 * ms},
		{"burst spent", 0, false, 0, 100 * ms, 300 * ms},
		{"still early", 40 * ms, false, 0, 60 * ms, 260 * ms},
		{"1ns early", 60*ms - 1, false, 0, 1, 200*ms + 1},
		{"exactly on time", 1, true, 0, 0, 300 * ms},
		{"denied again", 0, false, 0, 100 * ms, 300 * ms},
		{"partial refill", 250 * ms, true, 1, 0, 150 * ms},
		{"long idle is full burst", time.Hour, true, 2, 0, 100 * ms},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		got, err := l.Allow(context.Background(), "k", lim)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		want := Result{Allowed: st.allowed, Remaining: st.remaining, RetryAfter: st.retry, ResetAfter: st.reset}
		if got != want {
			t.Errorf("%s: got %+v, want %+v", st.name, got, want)
		}
	}
}

// TestLocalSteadyRate checks that a caller trying every millisecond for 10s
// gets exactly the burst plus one request per interval.
func TestLocalSteadyRate(t *testing.T) {
	tests := []struct {
		rate  string
		burst int
		want  int
	}{
		{"10/s", 3, 3 + 99},   // allowed at 0 (x3), 100ms, ..., 9900ms
		{"100/s", 1, 1 + 999}, // 0, 10ms, ..., 9990ms
		{"1/m", 5, 5},
		{"3/s", 1, 1 + 29}, // interval 333.333333ms
	}
	for _, tt := range tests {
		t.Run(tt.rate+"/"+strconv.Itoa(tt.burst), func(t *testing.T) {
			clk := newFakeClock()
			l := NewLocal(LocalOptions{Now: clk.Now})
			lim := Limit{Rate: mustRate(t, tt.rate), Burst: tt.burst}
			n := 0
			for range 10_000 {
				r, _ := l.Allow(context.Background(), "k", lim)
				if r.Allowed {
					n++
				}
				clk.Advance(time.Millisecond)
			}
			if n != tt.want {
				t.Errorf("allowed %d in 10s, want %d", n, tt.want)
			}
		})
	}
}

func TestLocalKeysIndependent(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now})
	lim := Limit{Rate: mustRate(t, "1/h"), Burst: 1}
	for _, k := range []string{"a", "b", "apikey:1", "user:1|ip:10.0.0.1"} {
		if r, _ := l.Allow(context.Background(), k, lim); !r.Allowed {
			t.Errorf("first request of %q denied", k)
		}
		if r, _ := l.Allow(context.Background(), k, lim); r.Allowed {
			t.Errorf("second request of %q allowed", k)
		}
	}
}

func TestLocalInvalidLimit(t *testing.T) {
	l := NewLocal(LocalOptions{})
	_, err := l.Allow(context.Background(), "k", Limit{Rate: mustRate(t, "1/s"), Burst: 0})
	if !errors.Is(err, ErrInvalidLimit) {
		t.Fatalf("Allow with burst 0: err = %v, want ErrInvalidLimit", err)
	}
}

// TestLocalConcurrent: many goroutines on one key at one instant get
// exactly the burst between them.
func TestLocalConcurrent(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now})
	lim := Limit{Rate: mustRate(t, "1/h"), Burst: 50}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 100 {
				if r, _ := l.Allow(context.Background(), "shared", lim); r.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 50 {
		t.Fatalf("allowed %d, want exactly the burst 50", got)
	}
}

// TestLocalBoundedMemory: a flood of distinct keys never grows the table
// past MaxKeys, and never denies a new key (no fail-closed when full).
func TestLocalBoundedMemory(t *testing.T) {
	clk := newFakeClock()
	const maxKeys = 256
	l := NewLocal(LocalOptions{Now: clk.Now, MaxKeys: maxKeys})
	lim := Limit{Rate: mustRate(t, "1/h"), Burst: 1}
	for i := range 20_000 {
		r, err := l.Allow(context.Background(), "flood:"+strconv.Itoa(i), lim)
		if err != nil || !r.Allowed {
			t.Fatalf("new key %d: %+v, %v; a full table must admit new keys", i, r, err)
		}
	}
	if n := l.Len(); n > maxKeys || n < maxKeys/2 {
		t.Fatalf("Len() = %d after a flood, want at most %d (and the table used)", n, maxKeys)
	}

	// Once every TAT is past, admitting new keys cleans up as it goes and
	// Sweep empties the table.
	clk.Advance(2 * time.Hour)
	l.Sweep()
	if n := l.Len(); n != 0 {
		t.Fatalf("Len() = %d after Sweep, want 0", n)
	}
}

// TestLocalExpiredDropped: a key back at full burst is dropped when new
// keys are admitted, without Sweep, and dropping it changes nothing.
func TestLocalExpiredDropped(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now, MaxKeys: 64 * 4})
	lim := Limit{Rate: mustRate(t, "10/s"), Burst: 2}
	for i := range 1000 {
		_, _ = l.Allow(context.Background(), "old:"+strconv.Itoa(i), lim)
	}
	clk.Advance(time.Second) // every old key is back at full burst
	for i := range 1000 {
		_, _ = l.Allow(context.Background(), "new:"+strconv.Itoa(i), lim)
	}
	// Every new key has a live TAT; with all old ones expired, the shards
	// must have preferred dropping those.
	live := 0
	for i := range l.shards {
		for k := range l.shards[i].tat {
			if k[:4] == "new:" {
				live++
			}
		}
	}
	if live != l.Len() {
		t.Errorf("%d of %d tracked keys are new; expired old keys were kept over live ones", live, l.Len())
	}
}

func TestLocalAllowZeroAllocs(t *testing.T) {
	l := NewLocal(LocalOptions{})
	lim := Limit{Rate: mustRate(t, "1000000/s"), Burst: 100}
	ctx := context.Background()
	_, _ = l.Allow(ctx, "apikey:0123456789abcdef", lim)
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = l.Allow(ctx, "apikey:0123456789abcdef", lim)
	})
	if allocs != 0 {
		t.Fatalf("Allow for an existing key allocates %v times, want 0", allocs)
	}
}

func BenchmarkLocalAllow(b *testing.B) {
	lim := Limit{Rate: Rate{1_000_000_000, time.Second}, Burst: 1000}
	b.Run("one-key", func(b *testing.B) {
		l := NewLocal(LocalOptions{})
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = l.Allow(ctx, "apikey:0123456789abcdef", lim)
		}
	})
	b.Run("parallel-1k-keys", func(b *testing.B) {
		l := NewLocal(LocalOptions{})
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = "user:" + strconv.Itoa(i)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			i := 0
			for pb.Next() {
				_, _ = l.Allow(ctx, keys[i&1023], lim)
				i++
			}
		})
	})
}
