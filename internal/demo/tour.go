package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/gateway"
)

// tour is the walk through the demo: shell commands a user can paste,
// each paired with the same requests made from Go, so that what the demo
// prints under a command is what that command got.
type tour struct {
	dir      string // the demo directory ($D in the commands)
	gateway  string // https://localhost:PORT
	outbound string // catalog's outbound proxy address
	// endpoints are the gateway's addresses of a service (gateway.Endpoints).
	endpoints func(service string) []string

	edge    *http.Client // trusts the server's bundle, as curl --cacert does
	lateral *http.Client // through catalog's sidecar, as curl -x does
	secrets map[string]string
	// ward runs the tour's ward commands in process.
	ward func(ctx context.Context, out io.Writer, args ...string) error

	// What the tour's requests must have left in the server's log: the
	// ids of those the gateway answered, and of those it forwarded.
	start               time.Time
	answered, forwarded []string
}

type step struct {
	title string
	calls []call
}

// call is one command of a step and the Go equivalent that runs it.
type call struct {
	cmd string
	run func(ctx context.Context) (string, error)
}

func (t *tour) init(bundleFile string) error {
	pem, err := os.ReadFile(bundleFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate", bundleFile)
	}
	t.edge = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
	}}
	t.lateral = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: t.outbound}),
	}}
	t.secrets, t.start = map[string]string{}, time.Now()
	for _, f := range []string{fileAPIKey, fileAlice, fileBob} {
		b, err := os.ReadFile(filepath.Join(t.dir, f))
		if err != nil {
			return err
		}
		t.secrets[f] = strings.TrimSpace(string(b))
	}
	return nil
}

func (t *tour) close() {
	t.edge.CloseIdleConnections()
	t.lateral.CloseIdleConnections()
}

// setDir is the first command: the others refer to the demo directory as $D.
func (t *tour) setDir() string { return "D=" + shellQuote(t.dir) }

const (
	curl      = `curl -s -w 'HTTP %{http_code}\n' --cacert "$D/server/bundle.pem"`
	withKey   = `-H "X-Api-Key: $(cat "$D/` + fileAPIKey + `")"`
	withAlice = `-H "Authorization: Bearer $(cat "$D/` + fileAlice + `")"`
	withBob   = `-H "Authorization: Bearer $(cat "$D/` + fileBob + `")"`
	// rateLoop is how many requests the rate-limit step sends: one more
	// than the catalog route's burst of 3.
	rateLoop = 5
)

func (t *tour) steps() []step {
	loop := make([]string, rateLoop)
	for i := range loop {
		loop[i] = fmt.Sprint(i + 1)
	}
	return append([]step{
		{"Allowed: alice (scope orders:read) with the shop app's API key. The gateway checks both, the orders\n" +
			"   policy, then calls orders' sidecar over mutual TLS; the app learns who asked from the sidecar.", []call{
			t.edgeCall("/orders/1", fileAPIKey, fileAlice),
			t.edgeCall("/catalog/items", fileAPIKey, fileAlice),
		}},
		{"Denied, with the reason: bob's token lacks orders:read, so the orders policy refuses him at the\n" +
			"   gateway (403 no_rule_matches); without the API key nobody gets in (401 apikey_missing).", []call{
			t.edgeCall("/orders/1", fileAPIKey, fileBob),
			t.edgeCall("/orders/1", "", fileAlice),
		}},
		{"Rate limited: the catalog route allows 3 requests per 10 seconds per API key and user; the next\n" +
			"   ones get 429 with Retry-After (run within 10 s of the last run, fewer pass).", []call{{
			cmd: "for i in " + strings.Join(loop, " ") + `; do curl -s -o /dev/null -D - --cacert "$D/server/bundle.pem" ` +
				withKey + " " + withBob + " " + t.gateway + "/catalog/items | grep -iE '^(HTTP|retry-after)'; done",
			run: func(ctx context.Context) (string, error) {
				var out strings.Builder
				for range rateLoop {
					resp, _, err := t.do(ctx, t.edge, t.gateway+"/catalog/items", fileAPIKey, fileBob)
					if err != nil {
						return "", err
					}
					fmt.Fprintf(&out, "HTTP/%d %d\n", resp.ProtoMajor, resp.StatusCode)
					if ra := resp.Header.Get("Retry-After"); ra != "" {
						fmt.Fprintf(&out, "retry-after: %s\n", ra)
					}
				}
				return out.String(), nil
			},
		}}},
		{"Lateral movement refused: a call from the catalog app to orders, through catalog's sidecar.\n" +
			"   Orders' sidecar verifies catalog's SVID; the orders policy lets svc/catalog read /stock, not orders.", []call{{
			cmd: `curl -s -w 'HTTP %{http_code}\n' -x http://` + t.outbound + " http://orders/orders/1",
			run: func(ctx context.Context) (string, error) {
				resp, body, err := t.do(ctx, t.lateral, "http://orders/orders/1", "", "")
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%sHTTP %d", body, resp.StatusCode), nil
			},
		}}},
		{"Secrets: orders got its database password (db/orders/password) through ward run when it started:\n" +
			"   read from the vault with orders' own identity, which the SecretPolicy orders-db alone allows.\n" +
			"   Catalog's identity (its sidecar's SVID) is refused, and learns nothing of the value.", []call{
			t.secretGet(ordersDBPassword, "sidecar-catalog"),
		}},
		{"Injection blocked: alice, with valid credentials, puts SQL in a query parameter. The orders route\n" +
			"   enforces the WAF (the OWASP Core Rule Set, paranoia 1): 403 waf, and the record names the rule.", []call{
			t.edgeCall("/orders/1?id="+sqlInjection, fileAPIKey, fileAlice),
			t.wafRecords(),
		}},
		{"On the record: the gateway and each sidecar wrote every request above to their audit spools, which\n" +
			"   ship to the server's log; a request's id joins the gateway's record to the sidecar's.", []call{
			t.auditQuery("gateway.request"), t.auditQuery("sidecar.request"),
		}},
	}, append(append(t.discoverySteps(), t.detectionSteps()...), step{"The dashboard: open this one-time link (valid 5 minutes) in a browser that trusts\n" +
		"   \"$D/server/bundle.pem\" (or accept the warning) to see the services, the edges above with what\n" +
		"   was denied and why, and least-privilege policies suggested from the traffic (flows arrive every 10 s).", []call{
		t.dashboardLogin(),
	}})...)
}

// dashboardLogin is `ward dashboard login`: it prints a one-time link.
func (t *tour) dashboardLogin() call {
	return call{cmd: `ward --data-dir "$D/server" dashboard login`, run: func(ctx context.Context) (string, error) {
		var out strings.Builder
		err := t.ward(ctx, &out, "--data-dir", filepath.Join(t.dir, "server"), "dashboard", "login")
		return out.String(), err
	}}
}

// secretGet is `ward secret get path` with the workload identity kept in
// the demo directory's idDir, which the tour expects to be refused: it
// prints the error as the ward binary does, and fails the tour, printing
// nothing of it, if the value came back.
func (t *tour) secretGet(path, idDir string) call {
	return call{cmd: `ward --data-dir "$D/server" secret get ` + path + ` --identity-dir "$D/` + idDir + `"`,
		run: func(ctx context.Context) (string, error) {
			var out bytes.Buffer
			err := t.ward(ctx, &out, "--data-dir", filepath.Join(t.dir, "server"), "secret", "get", path,
				"--identity-dir", filepath.Join(t.dir, idDir))
			if err == nil {
				clear(out.Bytes())
				return "", fmt.Errorf("the identity in %s read %s: the SecretPolicy does not hold", idDir, path)
			}
			return "ward: " + err.Error(), nil
		}}
}

// sqlInjection is the tour's attack: 1' OR '1'='1' --, URL-encoded.
const sqlInjection = "1%27%20OR%20%271%27=%271%27%20--"

// wafRecords is `ward audit query --reason waf --json` on the server's log:
// the WAF's refusals with their rule ids, score and location.
func (t *tour) wafRecords() call {
	return call{cmd: `ward --data-dir "$D/server" audit query --reason waf --json`, run: func(ctx context.Context) (string, error) {
		if err := t.shipped(ctx); err != nil {
			return "", err
		}
		var out strings.Builder
		err := t.ward(ctx, &out, "--data-dir", filepath.Join(t.dir, "server"), "audit", "query", "--reason", "waf", "--json")
		return out.String(), err
	}}
}

// auditQuery is `ward audit query --type typ` on the server's log, run
// once the tour's records have reached it.
func (t *tour) auditQuery(typ string) call {
	return call{cmd: `ward --data-dir "$D/server" audit query --type ` + typ, run: func(ctx context.Context) (string, error) {
		if err := t.shipped(ctx); err != nil {
			return "", err
		}
		var out strings.Builder
		err := t.ward(ctx, &out, "--data-dir", filepath.Join(t.dir, "server"), "audit", "query", "--type", typ)
		return out.String(), err
	}}
}

// shipped waits until the server's log holds the records of the tour's
// requests: a gateway.request for each the gateway answered, a
// sidecar.request for each it forwarded and for the lateral call.
// Proxies ship their spools every second.
func (t *tour) shipped(ctx context.Context) error {
	dir := filepath.Join(t.dir, "server", control.DirAudit)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var gw, sc []string
		lateral := false
		_, err := audit.Query(ctx, dir, audit.Filter{Since: t.start}, func(r audit.Record) error {
			switch e := r.Event; {
			case e.Type == "gateway.request":
				gw = append(gw, e.RequestID)
			case e.Type == "sidecar.request" && e.Actor == catalogID.String():
				lateral = true
			case e.Type == "sidecar.request":
				sc = append(sc, e.RequestID)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("the server's audit log: %w", err)
		}
		if lateral && containsAll(gw, t.answered) && containsAll(sc, t.forwarded) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the tour's audit records did not reach the server's log within 10s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// edgeCall is a GET through the gateway with the API key and the token in
// the named files ("": none).
func (t *tour) edgeCall(path, keyFile, tokenFile string) call {
	cmd := []string{curl}
	if keyFile != "" {
		cmd = append(cmd, withKey)
	}
	switch tokenFile {
	case fileAlice:
		cmd = append(cmd, withAlice)
	case fileBob:
		cmd = append(cmd, withBob)
	}
	cmd = append(cmd, t.gateway+path)
	return call{cmd: strings.Join(cmd, " "), run: func(ctx context.Context) (string, error) {
		resp, body, err := t.do(ctx, t.edge, t.gateway+path, keyFile, tokenFile)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%sHTTP %d", body, resp.StatusCode), nil
	}}
}

// do sends a GET with the secrets of the named files and returns the
// response with its body read.
func (t *tour) do(ctx context.Context, c *http.Client, u, keyFile, tokenFile string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	if keyFile != "" {
		req.Header.Set("X-Api-Key", t.secrets[keyFile])
	}
	if tokenFile != "" {
		req.Header.Set("Authorization", "Bearer "+t.secrets[tokenFile])
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if id := resp.Header.Get(gateway.HeaderRequestID); c == t.edge && id != "" {
		t.answered = append(t.answered, id)
		if resp.StatusCode == http.StatusOK {
			t.forwarded = append(t.forwarded, id)
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, string(body), err
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
