package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/resource"
)

type config struct {
	servers     []string
	dataDir     string
	td          spiffeid.TrustDomain
	services    int
	instances   int
	duration    time.Duration
	churn       float64 // fraction of the instances replaced per minute
	grace       time.Duration
	label       string
	out         string
	pids        []int
	pgPID       int
	clkTck      float64
	static      bool
	settle      time.Duration
	concurrency int
	pprof       []string // host:port of the servers' pprof listeners
	pprofOut    string
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	servers := fs.String("servers", "", "comma-separated https:// URLs of the ward servers (changes go to the first)")
	dataDir := fs.String("data-dir", "", "data directory of the first server (operator credential and bundle.pem)")
	td := fs.String("trust-domain", "example.org", "trust domain")
	var c config
	fs.IntVar(&c.services, "services", 500, "services (one simulated proxy each)")
	fs.IntVar(&c.instances, "instances", 5000, "instances, spread evenly over the services")
	fs.DurationVar(&c.duration, "duration", 2*time.Minute, "measured window")
	fs.Float64Var(&c.churn, "churn", 0.10, "fraction of the instances replaced per minute")
	fs.DurationVar(&c.grace, "grace", 5*time.Second, "after the window, how long changes made in it may still take to arrive")
	fs.DurationVar(&c.settle, "settle", 90*time.Second, "how long the initial registrations may take to reach every proxy")
	fs.StringVar(&c.label, "label", "sqlite", "name of this set-up in the report")
	fs.StringVar(&c.out, "out", "", "write the result here (JSON)")
	pids := fs.String("pids", "", "comma-separated PIDs of the ward server processes to measure")
	fs.IntVar(&c.pgPID, "pg-pid", 0, "PID of the PostgreSQL postmaster to measure (with its children)")
	fs.Float64Var(&c.clkTck, "clk-tck", 100, "clock ticks per second (getconf CLK_TCK)")
	fs.BoolVar(&c.static, "static", false, "give every Service one static endpoint too (static and registered endpoints mix)")
	fs.IntVar(&c.concurrency, "concurrency", 32, "requests in flight while setting up")
	pprofs := fs.String("pprof", "", "comma-separated loopback host:port of the servers' pprof listeners (bench/mesh/wardprof): a CPU profile of each over the window")
	fs.StringVar(&c.pprofOut, "pprof-out", ".", "directory for the profiles (LABEL-N.pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *servers == "" || *dataDir == "" {
		return errors.New("-servers and -data-dir are required")
	}
	if c.services < 3 || c.instances < c.services {
		return errors.New("need at least 3 services and one instance per service")
	}
	if c.churn < 0 || c.churn > 1 {
		return errors.New("-churn is a fraction per minute, between 0 and 1")
	}
	for _, s := range strings.Split(*servers, ",") {
		c.servers = append(c.servers, strings.TrimSpace(s))
	}
	c.dataDir = *dataDir
	var err error
	if c.td, err = spiffeid.TrustDomainFromString(*td); err != nil {
		return err
	}
	for _, a := range strings.Split(*pprofs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.pprof = append(c.pprof, a)
		}
	}
	for _, p := range strings.Split(*pids, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("-pids: %w", err)
		}
		c.pids = append(c.pids, n)
	}
	res, err := run(context.Background(), c)
	if err != nil {
		return err
	}
	if c.out != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(c.out, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return printTable(os.Stdout, []result{res})
}

func svcName(i int) string { return fmt.Sprintf("svc-%d", i) }

// callers are the services whose policies let them call service i: the
// proxies interested in i's instances.
func callers(i, n int) []int { return []int{(i - 1 + n) % n, (i - 2 + n) % n} }

// failures counts the failures logged, by kind.
var failures sync.Map // string → *atomic.Int64

// failf logs a failure of a kind: the first 10 of each kind, then every
// 1,000th, so that an overloaded server does not bury the log.
func failf(kind, format string, args ...any) {
	v, _ := failures.LoadOrStore(kind, new(atomic.Int64))
	if n := v.(*atomic.Int64).Add(1); n <= 10 || n%1000 == 0 {
		logf("%s (%s failure %d)", fmt.Sprintf(format, args...), kind, n)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s sim: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// documents is the mesh: services without endpoints and their policies.
func documents(c config) []control.ResourceFile {
	var parts []string
	for i := range c.services {
		spec := "{}"
		if c.static {
			spec = fmt.Sprintf("{endpoints: [\"127.0.0.1:%d\"]}", 30000+i)
		}
		parts = append(parts, fmt.Sprintf("apiVersion: ward/v1\nkind: Service\nmetadata: {name: %s}\nspec: %s\n---\n", svcName(i), spec))
		cs := callers(i, c.services)
		parts = append(parts, fmt.Sprintf("apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: %s-callers}\nspec:\n  target: %s\n  rules: [{from: [svc/%s, svc/%s], methods: [GET]}]\n---\n",
			svcName(i), svcName(i), svcName(cs[0]), svcName(cs[1])))
	}
	var files []control.ResourceFile
	for i := 0; i < len(parts); i += resource.MaxDocuments {
		files = append(files, control.ResourceFile{Name: fmt.Sprintf("discovery-%d.yaml", len(files)), Data: strings.Join(parts[i:min(i+resource.MaxDocuments, len(parts))], "")})
	}
	return files
}

// parallel runs fn(0..n-1) with at most k in flight and returns the first error.
func parallel(n, k int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first error
		mu    sync.Mutex
	)
	for range k {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func run(ctx context.Context, c config) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pem, err := os.ReadFile(filepath.Join(c.dataDir, "bundle.pem"))
	if err != nil {
		return result{}, err
	}
	bundle, err := identity.ParseBundlePEM(c.td, pem)
	if err != nil {
		return result{}, err
	}
	cred, err := control.LoadCredential(filepath.Join(c.dataDir, control.FileOperator))
	if err != nil {
		return result{}, err
	}
	op, err := control.NewClient(c.servers[0], bundle, cred)
	if err != nil {
		return result{}, err
	}

	start := time.Now()
	if _, err := op.Apply(ctx, control.ApplyRequest{Files: documents(c)}); err != nil {
		return result{}, fmt.Errorf("apply: %w", err)
	}
	logf("applied %d services and policies in %s", c.services, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	certs := make([]*tls.Certificate, c.services)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	err = parallel(c.services, 8, func(i int) error {
		id := spiffeid.RequireFromSegments(c.td, "svc", svcName(i))
		tok, err := op.CreateToken(ctx, id.String(), 5*time.Minute)
		if err != nil {
			return fmt.Errorf("token for %s: %w", id, err)
		}
		client, err := control.NewClient(c.servers[0], bundle, nil)
		if err != nil {
			return err
		}
		src, err := identity.NewSource(identity.Config{TrustDomain: c.td, Authority: client, Logger: quiet})
		if err != nil {
			return err
		}
		if err := src.SetBundle(bundle); err != nil {
			return err
		}
		if err := src.Enroll(ctx, id, tok.Token); err != nil {
			return fmt.Errorf("enroll %s: %w", id, err)
		}
		certs[i] = src.Current().TLSCertificate()
		return nil
	})
	if err != nil {
		return result{}, err
	}
	logf("enrolled %d SVIDs in %s", c.services, time.Since(start).Round(time.Millisecond))

	tr := newTracker(c.services)
	prx := make([]*proxy, c.services)
	for i := range prx {
		client, err := control.NewClient(c.servers[i%len(c.servers)], bundle, nil)
		if err != nil {
			return result{}, err
		}
		client.FollowCredential(func() *tls.Certificate { return certs[i] })
		prx[i] = &proxy{idx: i, client: client, tr: tr}
	}
	var proxies sync.WaitGroup
	defer proxies.Wait()
	defer cancel()
	for _, p := range prx {
		proxies.Go(func() { p.run(ctx) })
	}

	reg := newRegistrar(c, bundle, certs, tr)
	defer reg.stopAll()
	start = time.Now()
	regProfiles := profile(ctx, c, c.label+"-register", 30*time.Second, nil)
	defer regProfiles.Wait()
	slots := make([]*instance, c.instances)
	var slotsMu sync.Mutex // the churn replaces slots from its goroutines
	// A server that cannot keep up refuses or times out registrations:
	// that is a result too, so the run goes on without those instances.
	var regFailed atomic.Int64
	_ = parallel(c.instances, c.concurrency, func(k int) error {
		in, err := reg.start(ctx, k%c.services)
		if err != nil {
			if regFailed.Add(1) <= 5 {
				logf("register instance %d: %v", k, err)
			}
			return nil
		}
		slots[k] = in
		return nil
	})
	if n := regFailed.Load(); n == int64(c.instances) {
		return result{}, errors.New("every registration failed")
	} else if n > 0 {
		logf("%d of %d registrations failed", n, c.instances)
	}
	logf("registered %d instances in %s (TTL %s, renewing every %s)", c.instances-int(regFailed.Load()), time.Since(start).Round(time.Millisecond), reg.ttl(), reg.ttl()/3)

	// Every proxy must know every live instance of the services it calls
	// before the window starts.
	want := map[int][]string{}
	for _, in := range slots {
		if in != nil {
			want[in.svc] = append(want[in.svc], in.addr)
		}
	}
	converged := false
	for deadline := time.Now().Add(c.settle); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if lag := tr.lagging(want); lag == "" {
			converged = true
			break
		}
	}
	settled := time.Since(start)
	if converged {
		logf("every proxy knows the instances of the services it calls, %s after the first registration", settled.Round(time.Millisecond))
	} else {
		// Measured all the same: the table says it did not settle.
		logf("after %s the proxies still lack instances (%s); measuring anyway", c.settle, tr.lagging(want))
	}

	// The measured window.
	res := result{Label: c.label, Servers: len(c.servers), Services: c.services, Instances: c.instances,
		Window: c.duration.Seconds(), SettleSeconds: settled.Seconds(), Settled: converged, RegistrationsFailed: int(regFailed.Load()), TTL: reg.ttl().String()}
	cpu0 := sampleCPU(c.pids, c.pgPID)
	self0 := selfCPU()
	rss := startRSS(ctx, c.pids)
	reg.resetCounts()
	snaps0, bytes0 := tr.snapshotCounts()
	windowStart := time.Now()
	tr.openWindow(windowStart)
	profiles := profile(ctx, c, c.label, c.duration, regProfiles)
	defer profiles.Wait()
	replaced := 0
	if c.churn > 0 {
		every := time.Duration(float64(time.Minute) / (c.churn * float64(c.instances)))
		tick := time.NewTicker(every)
		var churns sync.WaitGroup
		end := time.After(c.duration)
	loop:
		for k := 0; ; k++ {
			select {
			case <-tick.C:
				slot := k % len(slots)
				slotsMu.Lock()
				old := slots[slot]
				slots[slot] = nil
				slotsMu.Unlock()
				if old == nil {
					continue // its replacement failed or is still under way
				}
				churns.Go(func() {
					reg.stop(ctx, old)
					in, err := reg.start(ctx, old.svc)
					if err != nil {
						failf("churn", "churn: %v", err)
					}
					slotsMu.Lock()
					slots[slot] = in // nil when the registration failed
					slotsMu.Unlock()
				})
				replaced++
			case <-end:
				break loop
			}
		}
		tick.Stop()
		churns.Wait()
	} else {
		time.Sleep(c.duration)
	}
	windowEnd := time.Now()
	cpu1 := sampleCPU(c.pids, c.pgPID)
	self1 := selfCPU()
	snaps1, bytes1 := tr.snapshotCounts()
	counts := reg.counts()
	tr.closeWindow(windowEnd)
	logf("window over: %d replaced; waiting %s for the last changes to arrive", replaced, c.grace)
	time.Sleep(c.grace)
	maxRSS := rss()

	secs := windowEnd.Sub(windowStart).Seconds()
	res.Window = secs
	res.Ops = counts
	res.SimCPUPercent = 100 * (self1 - self0).Seconds() / secs
	res.Replaced = replaced
	res.Delays = tr.delays()
	res.SnapshotsPerSec = float64(snaps1-snaps0) / secs
	res.SnapshotMBPerSec = float64(bytes1-bytes0) / secs / 1e6
	res.ServicesPerSnapshot = tr.servicesPerSnapshot()
	for i, pid := range c.pids {
		ticks := cpu1.ward[i] - cpu0.ward[i]
		res.Ward = append(res.Ward, procResult{PID: pid, CPUPercent: 100 * ticks / c.clkTck / secs, MaxRSSMB: maxRSS[i], PeakRSSMB: statusKB(pid, "VmHWM") / 1024})
		res.WardCPUSeconds += ticks / c.clkTck
	}
	if ops := counts.Registrations + counts.Renewals + counts.Deregistrations; ops > 0 {
		res.WardUsPerOp = res.WardCPUSeconds * 1e6 / float64(ops)
	}
	if c.pgPID != 0 {
		res.PostgresCPUPercent = 100 * (cpu1.pg - cpu0.pg) / c.clkTck / secs
	}
	return res, nil
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// profile fetches a CPU profile of the next d from each server's pprof
// listener into c.pprofOut, as NAME-I.pprof. A server profiles once at a
// time: after the profiles of before end, it profiles what is left of d.
func profile(ctx context.Context, c config, name string, d time.Duration, before *sync.WaitGroup) *sync.WaitGroup {
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for i, addr := range c.pprof {
		wg.Go(func() {
			if before != nil {
				before.Wait()
			}
			secs := int(time.Until(end).Seconds())
			if secs < 1 {
				return
			}
			path := filepath.Join(c.pprofOut, fmt.Sprintf("%s-%d.pprof", name, i))
			if err := fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), path); err != nil {
				logf("profile of %s: %v", addr, err)
				return
			}
			logf("CPU profile of server %d: %s", i, path)
		})
	}
	return &wg
}

func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
