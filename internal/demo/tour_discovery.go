package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// spreadRequests and stopRequests are how many requests the discovery
// steps send: enough that both instances get some (each pick is one of
// two), and to cover the stop, the drain and a second after it.
const (
	spreadRequests = 20
	stopRequests   = 40
)

// second is the second orders instance the tour starts and stops, run
// in process as `ward demo instance orders` runs it.
type second struct {
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	out    bytes.Buffer
}

func (s *second) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *second) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// discoverySteps show registration: the live set, a second orders
// instance joining and sharing the traffic, and a clean stop that loses
// no request.
func (t *tour) discoverySteps() []step {
	orders := curl + " " + withKey + " " + withAlice + " " + t.gateway + "/orders/1"
	var inst second
	return []step{
		{"Discovery: no Service in ward.yaml has an address. Each sidecar registered its own inbound address with\n" +
			"   its SVID (only svc/orders may register orders); the server merges the live instances into the\n" +
			"   snapshots of the proxies its policies and routes let call them, and drops one that stops renewing.", []call{
			t.instances(""),
		}},
		{"A second orders instance joins: its sidecar registers, the gateway learns of it within a second,\n" +
			"   and requests spread over both (the less busy of two picked at random).", []call{
			{cmd: `ward demo instance orders --dir "$D" > "$D/orders-2.log" 2>&1 & echo $! > "$D/orders-2.pid"; ` +
				`until grep -q registered "$D/orders-2.log"; do sleep 0.2; done; sleep 1; cat "$D/orders-2.log"`,
				run: func(ctx context.Context) (string, error) {
					ictx, cancel := context.WithCancel(ctx)
					inst.cancel, inst.done = cancel, make(chan error, 1)
					go func() { inst.done <- t.ward(ictx, &inst, "demo", "instance", "orders", "--dir", t.dir) }()
					for deadline := time.Now().Add(15 * time.Second); !strings.Contains(inst.output(), "registered") || len(t.endpoints("orders")) < 2; {
						select {
						case err := <-inst.done:
							return "", fmt.Errorf("the second orders instance stopped: %v\n%s", err, inst.output())
						case <-time.After(50 * time.Millisecond):
						}
						if time.Now().After(deadline) {
							return "", errors.New("the gateway did not learn of the second orders instance within 15s")
						}
					}
					return inst.output(), nil
				}},
			{cmd: fmt.Sprintf(`for i in $(seq %d); do %s | grep -o '"instance":"[^"]*"'; done | sort | uniq -c`,
				spreadRequests, strings.Replace(orders, curl, `curl -s --cacert "$D/server/bundle.pem"`, 1)),
				run: func(ctx context.Context) (string, error) {
					counts := map[string]int{}
					for range spreadRequests {
						resp, body, err := t.do(ctx, t.edge, t.gateway+"/orders/1", fileAPIKey, fileAlice)
						if err != nil {
							return "", err
						}
						if resp.StatusCode != 200 {
							return "", fmt.Errorf("orders answered %d: %s", resp.StatusCode, body)
						}
						_, rest, _ := strings.Cut(body, `"instance":"`)
						name, _, _ := strings.Cut(rest, `"`)
						counts[`"instance":"`+name+`"`]++
					}
					return uniqC(counts), nil
				}},
		}},
		{"A clean stop loses nothing: while requests flow, the second instance gets SIGTERM. Its sidecar\n" +
			"   deregisters, serves two more seconds while the callers learn it is gone, then exits.", []call{
			{cmd: fmt.Sprintf(`(sleep 1; kill "$(cat "$D/orders-2.pid")") & for i in $(seq %d); do curl -s -o /dev/null -w '%%{http_code}\n' `+
				`--cacert "$D/server/bundle.pem" %s %s %s/orders/1; sleep 0.1; done | sort | uniq -c; wait`, stopRequests, withKey, withAlice, t.gateway),
				run: func(ctx context.Context) (string, error) {
					if inst.cancel == nil {
						return "", errors.New("no second instance to stop")
					}
					stop := time.AfterFunc(time.Second, inst.cancel)
					defer stop.Stop()
					counts := map[string]int{}
					for range stopRequests {
						resp, _, err := t.do(ctx, t.edge, t.gateway+"/orders/1", fileAPIKey, fileAlice)
						if err != nil {
							return "", err
						}
						counts[fmt.Sprint(resp.StatusCode)]++
						time.Sleep(100 * time.Millisecond)
					}
					select {
					case err := <-inst.done:
						if err != nil {
							return "", fmt.Errorf("the second orders instance: %w", err)
						}
					case <-time.After(10 * time.Second):
						return "", errors.New("the second orders instance did not stop within 10s")
					}
					return uniqC(counts), nil
				}},
			t.instances("orders"),
		}},
	}
}

// instances is `ward instances [service]` as an operator.
func (t *tour) instances(service string) call {
	cmd, args := `ward --data-dir "$D/server" instances`, []string{"--data-dir", filepath.Join(t.dir, "server"), "instances"}
	if service != "" {
		cmd, args = cmd+" "+service, append(args, service)
	}
	return call{cmd: cmd, run: func(ctx context.Context) (string, error) {
		var out strings.Builder
		err := t.ward(ctx, &out, args...)
		return out.String(), err
	}}
}

// uniqC prints counts as `sort | uniq -c` does.
func uniqC(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%7d %s\n", counts[k], k)
	}
	return b.String()
}
