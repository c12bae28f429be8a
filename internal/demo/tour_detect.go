package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// badKeys are the made-up API keys of the ban step: more distinct keys
// than the default credential-cycling rule allows a source in a minute.
var badKeys = []string{"2", "3", "4", "5", "6", "7"}

// loopbackBan is the name of the ban detection gives the loopback
// address (auto- and the start of the address's SHA-256).
func loopbackBan() string {
	sum := sha256.Sum256([]byte("127.0.0.1"))
	return "auto-" + hex.EncodeToString(sum[:6])
}

// detectionSteps are the tour's steps on detection: the lateral call's
// alert, then a loop of bad API keys that gets the address banned on
// every proxy, and the ban lifted so that the demo goes on.
func (t *tour) detectionSteps() []step {
	server := filepath.Join(t.dir, "server")
	return []step{
		{"Detected: the server reads every record the proxies ship; the lateral call above (catalog -> orders,\n" +
			"   denied by policy) fired the default lateral-movement rule. `ward alerts` lists detections.", []call{{
			cmd: `ward --data-dir "$D/server" alerts --rule lateral-movement`,
			run: func(ctx context.Context) (string, error) {
				for deadline := time.Now().Add(10 * time.Second); ; {
					var out strings.Builder
					err := t.ward(ctx, &out, "--data-dir", server, "alerts", "--rule", "lateral-movement")
					if err == nil && strings.Contains(out.String(), catalogID.String()) {
						return out.String(), nil
					}
					if time.Now().After(deadline) {
						return "", fmt.Errorf("no lateral-movement alert for %s within 10s: %v\n%s", catalogID, err, out.String())
					}
					if err := sleep(ctx, 200*time.Millisecond); err != nil {
						return "", err
					}
				}
			},
		}}},
		{"Banned: six made-up API keys from one address trip the default credential-cycling rule (5 keys a\n" +
			"   minute); within about two seconds every gateway and sidecar answers that address 403 banned,\n" +
			"   before any authentication. The tour then lifts the ban (admins only) so the demo goes on.", []call{
			{
				cmd: "for i in " + strings.Join(badKeys, " ") + `; do curl -s -o /dev/null -w '%{http_code} ' --cacert "$D/server/bundle.pem" ` +
					`-H "X-Api-Key: wak_aaaaaaa${i}_made-up" ` + t.gateway + "/catalog/items; done; echo",
				run: func(ctx context.Context) (string, error) {
					var codes []string
					for _, k := range badKeys {
						resp, err := t.raw(ctx, "wak_aaaaaaa"+k+"_made-up")
						if err != nil {
							return "", err
						}
						codes = append(codes, fmt.Sprint(resp.StatusCode))
					}
					return strings.Join(codes, " "), nil
				},
			},
			{
				cmd: `for i in $(seq 50); do curl -s -o /dev/null -D - --cacert "$D/server/bundle.pem" ` + t.gateway + "/catalog/items | grep -qi '^x-ward-deny-reason: banned' && break; sleep 0.2; done; " +
					`curl -s -o /dev/null -D - --cacert "$D/server/bundle.pem" ` + t.gateway + "/catalog/items | grep -iE '^(HTTP|x-ward-deny-reason)'",
				run: func(ctx context.Context) (string, error) {
					for deadline := time.Now().Add(10 * time.Second); ; {
						resp, err := t.raw(ctx, "")
						if err != nil {
							return "", err
						}
						if reason := resp.Header.Get("X-Ward-Deny-Reason"); reason == "banned" {
							return fmt.Sprintf("HTTP/%d %d\nx-ward-deny-reason: %s", resp.ProtoMajor, resp.StatusCode, reason), nil
						}
						if time.Now().After(deadline) {
							return "", errors.New("the gateway did not ban the bad-key loop within 10s")
						}
						if err := sleep(ctx, 100*time.Millisecond); err != nil {
							return "", err
						}
					}
				},
			},
			t.wardCall(`ward --data-dir "$D/server" ban list`, "--data-dir", server, "ban", "list"),
			t.wardCall(`ward --data-dir "$D/server" ban remove `+loopbackBan(), "--data-dir", server, "ban", "remove", loopbackBan()),
		}},
	}
}

// wardCall runs a ward command in process and shows its output.
func (t *tour) wardCall(cmd string, args ...string) call {
	return call{cmd: cmd, run: func(ctx context.Context) (string, error) {
		var out strings.Builder
		err := t.ward(ctx, &out, args...)
		return out.String(), err
	}}
}

// raw is a GET of the catalog route through the gateway with key ("":
// none), its body discarded.
func (t *tour) raw(ctx context.Context, key string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.gateway+"/catalog/items", nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := t.edge.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
