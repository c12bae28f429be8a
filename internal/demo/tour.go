package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// tour is the walk through the demo: shell commands a user can paste,
// each paired with the same requests made from Go, so that what the demo
// prints under a command is what that command got.
type tour struct {
	dir      string // the demo directory ($D in the commands)
	gateway  string // https://localhost:PORT
	outbound string // catalog's outbound proxy address

	edge    *http.Client // trusts the server's bundle, as curl --cacert does
	lateral *http.Client // through catalog's sidecar, as curl -x does
	secrets map[string]string
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
	t.secrets = map[string]string{}
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
	return []step{
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
			"   Orders' sidecar verifies catalog's SVID and finds no rule for svc/catalog in the orders policy.", []call{{
			cmd: `curl -s -w 'HTTP %{http_code}\n' -x http://` + t.outbound + " http://orders/orders/1",
			run: func(ctx context.Context) (string, error) {
				resp, body, err := t.do(ctx, t.lateral, "http://orders/orders/1", "", "")
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%sHTTP %d", body, resp.StatusCode), nil
			},
		}}},
	}
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
