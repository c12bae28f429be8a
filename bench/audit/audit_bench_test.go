package auditbench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
)

var (
	clients = flag.Int("clients", 128, "concurrent appenders per GOMAXPROCS")
	records = flag.Int("records", 1_000_000, "records in the log that BenchmarkVerify and BenchmarkQuery read")
	logDir  = flag.String("logdir", "", "keep the large log here and reuse it between runs (default: a temporary directory, rebuilt each run)")
)

// t0 is when the generated log starts; it spans 90 days.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const span = 90 * 24 * time.Hour

// event i of n: 50 services calling 20 services, users active in
// contiguous runs of 1,000 records, one request in ten denied.
func event(i, n int) audit.Event {
	e := audit.Event{
		Time:      t0.Add(time.Duration(int64(span) / int64(n) * int64(i))),
		Type:      "gateway.request",
		Actor:     fmt.Sprintf("spiffe://bench.ward.test/svc/caller-%d", i%50),
		Subject:   fmt.Sprintf("spiffe://bench.ward.test/svc/svc-%d", i%20),
		Service:   fmt.Sprintf("svc-%d", i%20),
		User:      fmt.Sprintf("user-%d", i/1000),
		Source:    "198.51.100.23:49152",
		RequestID: fmt.Sprintf("%016x", i),
		Decision:  "allow",
		Result:    "200",
		Fields:    map[string]string{"method": "GET", "path": "/orders/42"},
	}
	if i%10 == 0 {
		e.Decision, e.Reason, e.Result = "deny", "no_rule", "403"
	}
	return e
}

func key(b *testing.B) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// BenchmarkAppend measures durable appends: each Append returns only once
// its record is fsynced, and concurrent appends share one fsync.
func BenchmarkAppend(b *testing.B) {
	w, err := audit.Open(b.TempDir(), audit.Options{Signer: key(b), Retention: -1})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(*clients)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			if _, err := w.Append(context.Background(), event(i, 1<<30)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// bigLog returns a signed log of *records records, building it once.
func bigLog(b *testing.B) (string, *ecdsa.PublicKey) {
	dir := *logDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("ward-audit-bench-%d", *records))
	}
	keyFile := filepath.Join(dir, "bench-key.der")
	done := filepath.Join(dir, "bench-complete")
	if data, err := os.ReadFile(done); err == nil && string(data) == fmt.Sprint(*records) {
		if pub, err := loadPub(keyFile); err == nil {
			return dir, pub
		}
	}
	os.RemoveAll(dir)
	k := key(b)
	if err := savePub(keyFile, k); err != nil {
		b.Fatal(err)
	}
	w, err := audit.Open(dir, audit.Options{Signer: k, Retention: -1})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	const workers = 2048
	next := atomic.Int64{}
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *records {
					errs <- nil
					return
				}
				if _, err := w.Append(context.Background(), event(i, *records)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	// Reopen once so the last sealed segments get indexed and compressed.
	w, err = audit.Open(dir, audit.Options{Signer: k, Retention: -1})
	if err != nil {
		b.Fatal(err)
	}
	waitSealed(b, dir)
	w.Close()
	if err := os.WriteFile(done, []byte(fmt.Sprint(*records)), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d records in %s (%s)", *records, time.Since(start).Round(time.Second), dir)
	return dir, &k.PublicKey
}

func waitSealed(b *testing.B, dir string) {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		plain, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		if len(plain) <= 1 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("sealed segments not compressed in time")
}

// BenchmarkVerify measures a full verification with signatures.
func BenchmarkVerify(b *testing.B) {
	dir, pub := bigLog(b)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		r, err := audit.Verify(dir, pub)
		if err != nil || !r.OK() {
			b.Fatalf("%v %v", err, r.Problems)
		}
	}
	b.ReportMetric(float64(*records)*float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkQuery measures query latency over the large log.
func BenchmarkQuery(b *testing.B) {
	dir, _ := bigLog(b)
	mid := t0.Add(span / 2)
	cases := []struct {
		name string
		f    audit.Filter
	}{
		{"user", audit.Filter{Principal: fmt.Sprintf("user-%d", *records/2000)}},
		{"hour", audit.Filter{Since: mid, Until: mid.Add(time.Hour)}},
		{"day-service-deny", audit.Filter{Since: mid, Until: mid.Add(24 * time.Hour), Service: "svc-10", Decision: "deny"}},
		{"absent-principal", audit.Filter{Principal: "spiffe://bench.ward.test/svc/nobody"}},
		{"all-denies-90d", audit.Filter{Decision: "deny", Reason: "no_rule"}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var st audit.QueryStats
			for range b.N {
				var err error
				st, err = audit.Query(context.Background(), dir, tc.f, func(audit.Record) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.Matched), "matched")
			b.ReportMetric(float64(st.Read), "segments-read")
			b.ReportMetric(float64(st.Segments), "segments")
		})
	}
}
