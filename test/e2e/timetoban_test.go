package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTimeToBan measures, over WARD_BAN_TRIALS trials (default 20, at
// most 200), the time from an attacker's first request to a ban enforced
// on three running gateways: each trial is a loop of made-up API keys,
// 50 a second, from its own loopback address (127.0.0.20 and up), sent in
// turn to the three gateways, until every gateway has answered 403 banned (the
// default credential-cycling rule fires at the fifth key). It logs p50
// and p99 of that time and of each gateway's own, and fails a trial that
// takes more than 5 s. bench/detect/run.sh runs it.
func TestTimeToBan(t *testing.T) {
	trials := 20
	if s := os.Getenv("WARD_BAN_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 200 {
			t.Fatalf("WARD_BAN_TRIALS=%q: want 1 to 200", s)
		}
		trials = n
	}
	e := newEdgeSetup(t)
	gws, _ := attackSetup(t, e, 3, "10m")
	const alpha = "abcdefghijklmnopqrstuvwxyz234567"
	const pace = 20 * time.Millisecond
	var all, each []time.Duration
	for trial := range trials {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(20+trial))}
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: e.roots, ServerName: "localhost"},
			DialContext:       (&net.Dialer{LocalAddr: src, Timeout: 2 * time.Second}).DialContext,
			ForceAttemptHTTP2: true,
		}
		client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
		banned := make([]time.Duration, len(gws))
		left := len(gws)
		start := time.Now()
		last := ""
		for i := 0; left > 0; i++ {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("trial %d (%s): not banned on every gateway within 5 s: %v (last answer %s)", trial, src.IP, banned, last)
			}
			g := i % len(gws)
			if banned[g] != 0 {
				continue
			}
			if i > 0 {
				time.Sleep(pace) // a loop of 50 requests a second, in turn to the gateways
			}
			key := fmt.Sprintf("wak_%c%c%c%czzzz_%s", alpha[trial%32], alpha[trial/32], alpha[i%32], alpha[i/32%32], strings.Repeat("A", 43))
			req, _ := http.NewRequestWithContext(context.Background(), "GET", "https://"+gws[g].addr+"/orders/1", nil)
			req.Header.Set("X-Api-Key", key)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("trial %d: %v", trial, err)
			}
			body, _ := io.ReadAll(resp.Body)
			last = resp.Status + " " + string(body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-Ward-Deny-Reason") == "banned" {
				banned[g] = time.Since(start)
				each = append(each, banned[g])
				left--
			}
		}
		tr.CloseIdleConnections()
		all = append(all, slices.Max(banned))
		time.Sleep(500 * time.Millisecond) // the records in flight of this trial reach the server before the next
	}
	p := func(d []time.Duration, q float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Millisecond)
	}
	t.Logf("time to ban on 3 gateways, %d trials: p50 %v p99 %v max %v", trials, p(all, 0.5), p(all, 0.99), slices.Max(all).Round(time.Millisecond))
	t.Logf("time to ban per gateway, %d samples: p50 %v p99 %v", len(each), p(each, 0.5), p(each, 0.99))
}
