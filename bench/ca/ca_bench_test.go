package cabench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/store"
	"github.com/wardsec/ward/internal/store/pgtest"
)

// clients is how many requests are in flight at once per GOMAXPROCS (see
// testing.B.SetParallelism). A server sees many concurrent clients; with
// one per core a store that waits on round trips (PostgreSQL) looks slower
// than it is.
var clients = flag.Int("clients", 4, "concurrent requests per GOMAXPROCS")

// workloads is how many distinct workload identities (and client keys) the
// benchmarks cycle through. Each request is still verified, signed and
// stored in full: reusing a CSR saves the client's work, not the CA's.
const workloads = 256

func TestMain(m *testing.M) { pgtest.Main(m) }

var td = spiffeid.RequireTrustDomainFromString("bench.ward.test")

// discard is an audit sink that records nothing, so that the benchmarks
// measure issuance and not a log writer.
type discard struct{}

func (discard) Emit(context.Context, audit.Event) error { return nil }

// backends are the stores the CA runs on, each opened fresh and empty.
var backends = []struct {
	name string
	open func(ctx context.Context, b *testing.B) (store.Store, error)
}{
	{"sqlite", func(ctx context.Context, b *testing.B) (store.Store, error) {
		return store.OpenSQLite(ctx, filepath.Join(b.TempDir(), "ward.db"))
	}},
	{"postgres", func(ctx context.Context, b *testing.B) (store.Store, error) {
		return store.OpenPostgres(ctx, pgtest.Start(b))
	}},
}

// client is one workload's identity and the CSR it sends.
type client struct {
	id  spiffeid.ID
	csr []byte
}

var (
	clientsOnce sync.Once
	clientPool  []client
	clientErr   error
)

// pool returns the workloads, made once per test binary.
func pool(b *testing.B) []client {
	b.Helper()
	clientsOnce.Do(func() {
		clientPool = make([]client, workloads)
		for i := range clientPool {
			id, err := spiffeid.FromSegments(td, "svc", fmt.Sprintf("bench-%d", i))
			if err != nil {
				clientErr = err
				return
			}
			_, csr, err := identity.NewCSR(id)
			if err != nil {
				clientErr = err
				return
			}
			clientPool[i] = client{id: id, csr: csr}
		}
	})
	if clientErr != nil {
		b.Fatal(clientErr)
	}
	return clientPool
}

// newCA returns a CA on a fresh store of the backend, closed when b's run ends.
func newCA(ctx context.Context, b *testing.B, open func(context.Context, *testing.B) (store.Store, error)) (*ca.CA, store.Store) {
	b.Helper()
	st, err := open(ctx, b)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	})
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	kek, err := ca.NewKEK(key)
	if err != nil {
		b.Fatal(err)
	}
	c, err := ca.New(ctx, ca.Config{
		TrustDomain: td,
		Store:       st,
		KEK:         kek,
		PublicURL:   "http://127.0.0.1:8441",
		Events:      discard{},
		Log:         slog.New(slog.DiscardHandler),
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return c, st
}

// parallel runs fn(i) for i in [0, n) on a few goroutines, outside any
// timer, and returns the first error.
func parallel(n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first atomic.Pointer[error]
	)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && first.Load() == nil; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return *err
	}
	return nil
}

// cpuMeter reads the CPU time this process has used, user and system. On a
// busy machine wall-clock rates fall with the share of CPU the benchmark
// gets; CPU time per issuance stays put. It does not count a PostgreSQL
// server's CPU, which runs in other processes.
type cpuMeter struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuMeter { return cpuMeter{start: processCPU()} }

// report adds CPU microseconds per operation (cpu-us/op) to b's results.
func (m cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64((processCPU()-m.start).Microseconds())/float64(b.N), "cpu-us/op")
}

// rate adds the issuance rate to b's results.
func rate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issuances/s")
}

// report adds the issuance rate and checks that every issuance was stored:
// a benchmark that issued nothing must not look fast.
func report(ctx context.Context, b *testing.B, st store.Store, want int) {
	b.Helper()
	rate(b)
	now := time.Now()
	n, err := st.CountExpiring(ctx, now, now.Add(ca.DefaultMaxSVIDTTL))
	if err != nil {
		b.Fatal(err)
	}
	if n != want {
		b.Fatalf("store holds %d current certificates, want %d", n, want)
	}
}

func checkIssued(iss *ca.Issued, want spiffeid.ID) error {
	if len(iss.Cert.URIs) != 1 || iss.Cert.URIs[0].String() != want.String() {
		return fmt.Errorf("issued %v, want %s", iss.Cert.URIs, want)
	}
	return nil
}

// BenchmarkEnroll measures join token + CSR to stored certificate: token
// lookup, CSR check, signing and the transaction that consumes the token and
// records the certificate. Tokens are created before the timer starts.
func BenchmarkEnroll(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			cl := pool(b)
			c, st := newCA(ctx, b, be.open)
			tokens := make([]string, b.N)
			err := parallel(b.N, func(i int) (err error) {
				tokens[i], _, err = c.CreateToken(ctx, cl[i%workloads].id, time.Hour, "bench")
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(*clients)
			b.ResetTimer()
			cpu := startCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) - 1
					w := cl[i%workloads]
					iss, err := c.Enroll(ctx, tokens[i], w.csr, "127.0.0.1")
					if err == nil {
						err = checkIssued(iss, w.id)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			cpu.report(b)
			report(ctx, b, st, b.N)
		})
	}
}

// BenchmarkRenew measures a renewal: verifying the presented SVID, looking
// it up in the inventory, the CSR check, signing and recording. The SVIDs
// that renew are enrolled before the timer starts; renewal does not use
// them up, so each is renewed many times.
func BenchmarkRenew(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			cl := pool(b)
			c, st := newCA(ctx, b, be.open)
			peers := make([]*x509.Certificate, workloads)
			err := parallel(workloads, func(i int) error {
				tok, _, err := c.CreateToken(ctx, cl[i].id, time.Hour, "bench")
				if err != nil {
					return err
				}
				iss, err := c.Enroll(ctx, tok, cl[i].csr, "127.0.0.1")
				if err != nil {
					return err
				}
				peers[i] = iss.Cert
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(*clients)
			b.ResetTimer()
			cpu := startCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := (next.Add(1) - 1) % workloads
					iss, err := c.Renew(ctx, peers[i], cl[i].csr, "127.0.0.1")
					if err == nil {
						err = checkIssued(iss, cl[i].id)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			cpu.report(b)
			report(ctx, b, st, workloads+b.N)
		})
	}
}

// BenchmarkSign is the floor under every issuance: x509.CreateCertificate
// of an SVID like the CA's with an ECDSA P-256 intermediate, and no store.
// The "sign" case is signing alone; "csr+sign+parse" adds what Enroll does
// in memory besides: checking the CSR and parsing the result.
func BenchmarkSign(b *testing.B) {
	interCert, interKey := newIntermediate(b)
	w := pool(b)[0]
	template := func() (*x509.Certificate, error) {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, err
		}
		now := time.Now()
		return &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{Organization: []string{"Ward"}},
			NotBefore:             now.Add(-30 * time.Second),
			NotAfter:              now.Add(time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
			URIs:                  []*url.URL{w.id.URL()},
			CRLDistributionPoints: []string{"http://127.0.0.1:8441/crl/0123456789abcdef0123456789abcdef01234567.crl"},
			OCSPServer:            []string{"http://127.0.0.1:8441/ocsp"},
		}, nil
	}
	csr, err := ca.ParseCSR(w.csr, w.id)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("sign", func(b *testing.B) {
		b.SetParallelism(*clients)
		cpu := startCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				tmpl, err := template()
				if err == nil {
					_, err = x509.CreateCertificate(rand.Reader, tmpl, interCert, csr.PublicKey, interKey)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		cpu.report(b)
		rate(b)
	})

	b.Run("csr+sign+parse", func(b *testing.B) {
		b.SetParallelism(*clients)
		cpu := startCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				err := func() error {
					csr, err := ca.ParseCSR(w.csr, w.id)
					if err != nil {
						return err
					}
					tmpl, err := template()
					if err != nil {
						return err
					}
					der, err := x509.CreateCertificate(rand.Reader, tmpl, interCert, csr.PublicKey, interKey)
					if err != nil {
						return err
					}
					_, err = x509.ParseCertificate(der)
					return err
				}()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		cpu.report(b)
		rate(b)
	})
}

// newIntermediate returns an ECDSA P-256 intermediate under a throwaway root.
func newIntermediate(b *testing.B) (*x509.Certificate, *ecdsa.PrivateKey) {
	b.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	root := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench root"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		b.Fatal(err)
	}
	if root, err = x509.ParseCertificate(rootDER); err != nil {
		b.Fatal(err)
	}
	inter := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "bench intermediate"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	interDER, err := x509.CreateCertificate(rand.Reader, inter, root, &interKey.PublicKey, rootKey)
	if err != nil {
		b.Fatal(err)
	}
	if inter, err = x509.ParseCertificate(interDER); err != nil {
		b.Fatal(err)
	}
	return inter, interKey
}
