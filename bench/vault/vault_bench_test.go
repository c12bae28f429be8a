package vaultbench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
	"github.com/wardsec/ward/internal/store"
	"github.com/wardsec/ward/internal/store/pgtest"
	"github.com/wardsec/ward/internal/vault"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var td = spiffeid.RequireTrustDomainFromString("example.org")

const policy = `apiVersion: ward/v1
kind: SecretPolicy
metadata: {name: orders-secrets}
spec:
  readers: [svc/orders]
  paths: ["orders/**"]
`

// server runs a ward server on dsn ("" for SQLite) with one secret and a
// policy letting svc/orders read it, and returns it with a client
// presenting svc/orders' SVID.
func server(b *testing.B, dsn string) (*control.Server, *control.Client) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := control.NewServer(ctx, control.ServerConfig{
		DataDir: filepath.Join(b.TempDir(), "data"), TrustDomain: td.Name(), StoreDSN: dsn,
		Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done; srv.Close() })
	cred, err := control.LoadCredential(filepath.Join(srv.DataDir(), control.FileOperator))
	if err != nil {
		b.Fatal(err)
	}
	op, err := control.NewClient(srv.URL(), srv.CA.Bundle(), cred)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := op.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: "p.yaml", Data: policy}}}); err != nil {
		b.Fatal(err)
	}
	if _, err := op.PutSecret(ctx, "orders/db/password", []byte("correct horse battery staple"), false); err != nil {
		b.Fatal(err)
	}
	src := controltest.Enroll(b, srv, spiffeid.RequireFromSegments(td, "svc", "orders"))
	c, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
	if err != nil {
		b.Fatal(err)
	}
	c.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
	return srv, c
}

// BenchmarkSecretRead is one secret read by a workload over mutual TLS
// 1.3 (kept-alive connections), with the SVID's revocation check, the
// SecretPolicy check, the unwrap and decryption, and the audit record
// fsynced before the answer; 4 readers in flight per core.
func BenchmarkSecretRead(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			dsn := ""
			if backend == "postgres" {
				dsn = pgURL(pgtest.Start(b))
			}
			_, c := server(b, dsn)
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sec, err := c.GetSecret(context.Background(), "orders/db/password", 0)
					if err != nil {
						b.Error(err)
						return
					}
					clear(sec.Value)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}

// BenchmarkEnvelope is the vault's own work for one read and one write,
// without network or audit: store round trips and AES-GCM twice (data key,
// value), on SQLite.
func BenchmarkEnvelope(b *testing.B) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "ward.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kek, _ := ca.NewKEK(key)
	v := vault.New(vault.Config{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := v.Unseal(context.Background(), kek); err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 64)
	if _, err := v.Put(context.Background(), "orders/db/password", value, "bench"); err != nil {
		b.Fatal(err)
	}
	b.Run("get", func(b *testing.B) {
		for b.Loop() {
			sec, err := v.Get(context.Background(), "orders/db/password", 0)
			if err != nil {
				b.Fatal(err)
			}
			sec.Wipe()
		}
	})
	b.Run("put", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Put(context.Background(), "orders/db/password", value, "bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// pgURL turns pgtest's key=value DSN into the postgres:// URL a server's
// StoreDSN takes.
func pgURL(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return dsn
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(f, "=")
		kv[k] = v
	}
	u := url.URL{Scheme: "postgres", Host: kv["host"] + ":" + kv["port"], Path: "/" + kv["dbname"], User: url.User(kv["user"])}
	u.RawQuery = "sslmode=disable"
	return u.String()
}

var (
	buildOnce sync.Once
	wardBin   string
	buildErr  error
)

func buildWard(b *testing.B) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ward-bench-")
		if err != nil {
			buildErr = err
			return
		}
		wardBin = filepath.Join(dir, "ward")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", wardBin, "./cmd/ward")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = err
			b.Log(string(out))
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return wardBin
}

// BenchmarkRunStartup is `ward run --secret ... -- true` (load the kept
// SVID, one mTLS read, exec) against exec'ing true directly: the start-up
// overhead an app pays for getting its secret from the vault.
func BenchmarkRunStartup(b *testing.B) {
	bin := buildWard(b)
	srv, _ := server(b, "")
	dir := b.TempDir()
	// Enroll once; every run below reuses the SVID kept in dir.
	out, err := exec.Command(bin, "token", "create", "--id", "spiffe://example.org/svc/orders", "--data-dir", srv.DataDir()).Output()
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"run", "--server", srv.URL(), "--bundle", filepath.Join(srv.DataDir(), control.FileBundle),
		"--service", "orders", "--data-dir", filepath.Join(dir, "id"), "--log-level", "warn",
		"--secret", "DB_PASSWORD=orders/db/password", "--", "true"}
	first := exec.Command(bin, append(args[:len(args)-2:len(args)-2], append([]string{"--token", strings.TrimSpace(string(out))}, args[len(args)-2:]...)...)...)
	if out, err := first.CombinedOutput(); err != nil {
		b.Fatalf("first ward run: %v\n%s", err, out)
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command(truePath).Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ward-run", func(b *testing.B) {
		for b.Loop() {
			if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
		}
	})
}
