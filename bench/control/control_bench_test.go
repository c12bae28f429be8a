package controlbench

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/resource"
)

var (
	proxies  = flag.Int("proxies", 50, "watching sidecars in BenchmarkPropagation")
	policies = flag.Int("policies", 10000, "AccessPolicies in BenchmarkLargeSet")
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// server starts a ward server on SQLite in a temporary directory and
// returns it with an admin client.
func server(b *testing.B) (*control.Server, *control.Client) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := control.NewServer(ctx, control.ServerConfig{
		DataDir: filepath.Join(b.TempDir(), "data"), TrustDomain: td.Name(),
		Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
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
	return srv, op
}

// mesh is n services, each protected by one policy that names its callers.
func mesh(n int, methods string) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "apiVersion: ward/v1\nkind: Service\nmetadata: {name: s%d}\nspec: {endpoints: [\"127.0.0.1:%d\"]}\n---\n", i, 20000+i)
		fmt.Fprintf(&sb, "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p%d}\nspec:\n  target: s%d\n  rules: [{from: [svc/s%d], methods: [%s], when: 'request.method != \"TRACE\"'}]\n---\n", i, i, (i+1)%n, methods)
	}
	return sb.String()
}

// apply sends docs as files of at most resource.MaxDocuments documents.
func apply(b *testing.B, op *control.Client, docs string) control.ChangeResponse {
	b.Helper()
	var files []control.ResourceFile
	parts := strings.SplitAfter(docs, "---\n")
	for i := 0; i < len(parts); i += resource.MaxDocuments {
		files = append(files, control.ResourceFile{Name: fmt.Sprintf("mesh-%d.yaml", len(files)), Data: strings.Join(parts[i:min(i+resource.MaxDocuments, len(parts))], "")})
	}
	resp, err := op.Apply(context.Background(), control.ApplyRequest{Files: files})
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

// BenchmarkPropagation: the time from the return of an apply to the moment
// each of -proxies watching sidecars has parsed and compiled the new
// snapshot into its policy engine (what the sidecar's Apply does before it
// swaps), over real mTLS long polls. It reports p50 and p99 over every
// proxy and every change.
func BenchmarkPropagation(b *testing.B) {
	srv, op := server(b)
	apply(b, op, mesh(*proxies, "GET"))
	type seen struct {
		version int64
		at      time.Time
	}
	ch := make(chan seen, *proxies*4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range *proxies {
		src := controltest.Enroll(b, srv, spiffeid.RequireFromSegments(td, "svc", fmt.Sprintf("s%d", i)))
		client, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
		if err != nil {
			b.Fatal(err)
		}
		client.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
		f := &control.Follower{Client: client, Path: filepath.Join(b.TempDir(), "snapshot.json"), Log: quiet()}
		first, _, _, err := f.First(ctx, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			_ = f.Run(ctx, first.Version, func(s control.SnapshotResponse) error {
				objs, err := resource.Parse("snapshot", []byte(s.Documents))
				if err != nil {
					return err
				}
				if _, err := policy.Compile(td, objs); err != nil {
					return err
				}
				ch <- seen{s.Version, time.Now()}
				return nil
			})
		}()
	}
	var lat []time.Duration
	methods := []string{"GET, POST", "GET"}
	b.ResetTimer()
	for i := range b.N {
		resp := apply(b, op, mesh(*proxies, methods[i%2]))
		applied := time.Now()
		for got := 0; got < *proxies; {
			s := <-ch
			if s.version == resp.Version {
				lat = append(lat, s.at.Sub(applied))
				got++
			}
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(*proxies), "proxies")
}

// BenchmarkLargeSet: applying a set of -policies AccessPolicies (each with
// a CEL condition) from scratch: the server parses, validates and compiles
// the whole set and records it; then one sidecar fetches its part.
func BenchmarkLargeSet(b *testing.B) {
	docs := mesh(*policies, "GET")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		srv, op := server(b)
		src := controltest.Enroll(b, srv, spiffeid.RequireFromSegments(td, "svc", "s1"))
		client, err := control.NewClient(srv.URL(), srv.CA.Bundle(), nil)
		if err != nil {
			b.Fatal(err)
		}
		client.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
		b.StartTimer()
		start := time.Now()
		apply(b, op, docs)
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "apply-ms")
		start = time.Now()
		snap, err := client.Snapshot(context.Background(), -1, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "snapshot-ms")
		if !strings.Contains(snap.Documents, "name: p1\n") {
			b.Fatalf("s1's snapshot lacks its policy")
		}
	}
	b.ReportMetric(float64(*policies), "policies")
}
