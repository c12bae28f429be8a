package demo_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/gateway"
)

// TestDemoRecordsEveryRequest (issue 13 item 2): the demo's gateway and
// sidecars record every request as they do in production, into their
// spools, shipped to the demo server's log. Requests made through the
// demo's gateway are found there, by request id, with the query `ward
// audit query` runs: the gateway's record of each, and the gateway's
// outcome and the sidecar's record of the one the gateway let through.
func TestDemoRecordsEveryRequest(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	out := &syncBuffer{}
	done := make(chan error, 1)
	d := newDemo(out)
	d.DataDir, d.GatewayAddr = dir, "127.0.0.1:0"
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "Ctrl-C stops everything"); {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("demo stopped before the end of the tour: %v\n%s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tour after 30s:\n%s", out)
		}
	}
	gw := regexp.MustCompile(`https://localhost:\d+`).FindString(out.String())
	pem, err := os.ReadFile(filepath.Join(dir, "server", control.FileBundle))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	secret := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	call := func(path, token string, want int) string {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw+path, nil)
		req.Header.Set("X-Api-Key", secret("apikey"))
		req.Header.Set("Authorization", "Bearer "+secret(token))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id := resp.Header.Get(gateway.HeaderRequestID)
		if resp.StatusCode != want || id == "" {
			t.Fatalf("GET %s as %s: %d, request id %q; want %d and an id", path, token, resp.StatusCode, id, want)
		}
		return id
	}
	allowed := call("/orders/7", "alice.jwt", http.StatusOK)
	denied := call("/orders/7", "bob.jwt", http.StatusForbidden)

	// What the server's log must hold: type and request id -> decision.
	// The gateway records its decision before forwarding and, for a
	// request it forwarded, the outcome as gateway.response.
	want := map[[2]string]string{
		{"gateway.request", allowed}:  "allow",
		{"gateway.response", allowed}: "allow",
		{"sidecar.request", allowed}:  "allow",
		{"gateway.request", denied}:   "deny",
	}
	serverLog := filepath.Join(dir, "server", control.DirAudit)
	var got map[[2]string]string
	for deadline := time.Now().Add(15 * time.Second); ; {
		got = map[[2]string]string{}
		if _, err := audit.Query(ctx, serverLog, audit.Filter{}, func(r audit.Record) error {
			if r.Event.RequestID == allowed || r.Event.RequestID == denied {
				got[[2]string{r.Event.Type, r.Event.RequestID}] = r.Event.Decision
			}
			return nil
		}); err != nil {
			t.Fatalf("query the server's audit log: %v", err)
		}
		if len(got) == len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for k, decision := range want {
		if got[k] != decision {
			t.Errorf("server's audit log: %s of request %s: %q, want %q", k[0], k[1], got[k], decision)
		}
	}
	if len(got) != len(want) {
		t.Errorf("server's audit log holds %v for those requests, want exactly %v", got, want)
	}
}
