package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/gateway"
)

// userCA issues client certificates for users.
func userCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "users"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func userCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestClientCertificateUser: on a route with user: mtls, the user is the
// verified client certificate's subject; without one the route refuses.
func TestClientCertificateUser(t *testing.T) {
	ca, caKey := userCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	e := newEdgeWith(t, func(c *gateway.Config) {
		c.TLS.ClientCAs, c.TLS.ClientAuth = pool, tls.VerifyClientCertIfGiven
	})
	e.writeConfig(strings.Replace(readConfig(t, e), "auth: {apiKey: optional, user: anonymous}", "auth: {apiKey: none, user: mtls}", 1))
	waitReload(t, e, func() bool { return e.do("GET", "/catalog/x", "", "", nil).StatusCode == 401 })

	resp := e.do("GET", "/catalog/x", "", "", nil)
	e.expectRefused(t, resp, refusal{401, "client_cert_missing"}, e.catalog.app.count(), e.catalog.app)

	tr := e.client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{userCert(t, ca, caKey, "carol")}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	r, err := c.Get(e.url("/catalog/x"))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 || e.catalog.app.last().Header.Get("X-Ward-User") != "carol" || e.catalog.app.last().Header.Get("X-Ward-User-Issuer") != "mtls" {
		t.Fatalf("status %d, app headers %v", r.StatusCode, e.catalog.app.last().Header)
	}
}

func readConfig(t *testing.T, e *edge) string {
	t.Helper()
	return fmt.Sprintf(resources, e.orders.addr, e.catalog.addr, e.idp.URL)
}

func waitReload(t *testing.T, e *edge, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !done(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not apply the new configuration")
		}
	}
}

// TestConfigReload: a valid change applies within seconds; an invalid file
// is refused and the running configuration keeps working.
func TestConfigReload(t *testing.T) {
	e := newEdge(t)
	if r := e.do("GET", "/catalog/x", "", "", nil); r.StatusCode != 200 {
		t.Fatalf("before: %d", r.StatusCode)
	}
	good := readConfig(t, e)
	brokenLine := strings.Count(good, "\n") + 5 // the line of the broken spec
	e.writeConfig(good + "---\napiVersion: ward/v1\nkind: Route\nmetadata: {name: broken}\nspec: {pathPrefix: nope, service: ghost}\n")
	time.Sleep(2500 * time.Millisecond) // two reload periods
	if r := e.do("GET", "/catalog/x", "", "", nil); r.StatusCode != 200 {
		t.Fatalf("an invalid file changed the running configuration: %d", r.StatusCode)
	}
	e.writeConfig(strings.Replace(readConfig(t, e), "pathPrefix: /catalog", "pathPrefix: /shop", 1))
	waitReload(t, e, func() bool { return e.do("GET", "/shop/x", "", "", nil).StatusCode != 404 })
	if r := e.do("GET", "/catalog/x", "", "", nil); r.StatusCode != 404 {
		t.Fatalf("old route still answers: %d", r.StatusCode)
	}
	// Both reloads are in the audit trail: the refusal with its error, the
	// change with what changed.
	var refused, applied *audit.Event
	for _, ev := range e.events.Events() {
		if ev.Type != "config.reload" {
			continue
		}
		switch ev.Decision {
		case "deny":
			refused = &ev
		case "allow":
			applied = &ev
		}
	}
	if refused == nil || refused.Reason != "invalid_config" || !strings.Contains(refused.Fields["error"], fmt.Sprintf(`edge.yaml:%d: spec.pathPrefix: invalid path prefix "nope"`, brokenLine)) {
		t.Errorf("refused reload event: %+v", refused)
	}
	if applied == nil || applied.Fields["changes"] != "~Route/catalog" || applied.Subject != "spiffe://example.org/gateway/edge" {
		t.Errorf("applied reload event: %+v", applied)
	}
}

// TestServiceDown: when the service's sidecar is gone the gateway answers
// 502, then 503 once the circuit breaker or ejection opens; never hangs.
func TestServiceDown(t *testing.T) {
	e := newEdge(t)
	e.writeConfig(strings.Replace(readConfig(t, e), e.catalog.addr, freeAddr(t), 1))
	time.Sleep(1500 * time.Millisecond)
	saw503 := false
	for range 20 {
		r := e.do("GET", "/catalog/x", "", "", nil)
		switch r.StatusCode {
		case 502:
		case 503:
			saw503 = true
		default:
			t.Fatalf("status %d with the service down", r.StatusCode)
		}
	}
	if !saw503 {
		t.Fatal("never 503: the breaker or ejector did not open")
	}
}

// TestNewRefusesBadConfig: a bad resource file stops the gateway at start
// with file and line.
func TestNewRefusesBadConfig(t *testing.T) {
	e := newEdge(t)
	e.writeConfig("apiVersion: ward/v1\nkind: Route\nmetadata: {name: r}\nspec: {pathPrefix: /x, service: ghost}\n")
	_, err := gateway.New(gateway.Config{Name: "other", TrustDomain: td, Listen: "127.0.0.1:0", TLS: &tls.Config{},
		ConfigFile: e.config, Source: e.source(spiffeid.RequireFromSegments(td, "gateway", "other")), APIKeys: e.keys, Log: quiet()})
	if err == nil || !strings.Contains(err.Error(), "edge.yaml:4: spec.service: no Service named \"ghost\"") {
		t.Fatalf("New: %v", err)
	}
}

// brokenLog is an audit sink whose storage has failed, the way
// audit.LogSink reports a disk error: Ready and Emit fail.
type brokenLog struct{ audit.Recorder }

func (*brokenLog) Ready() error { return errors.New("audit log: disk full") }

func (b *brokenLog) Emit(ctx context.Context, e audit.Event) error {
	_ = b.Recorder.Emit(ctx, e)
	return errors.New("audit log: disk full")
}

// TestFailClosedWithoutAudit: when the audit log cannot record, requests
// are refused with 503 and nothing reaches the service.
func TestFailClosedWithoutAudit(t *testing.T) {
	e := newEdgeWith(t, func(c *gateway.Config) { c.Events = &brokenLog{} })
	before := e.catalog.app.count()
	r := e.do("GET", "/catalog/x", "", "", nil)
	if r.StatusCode != 503 || r.Header.Get("X-Ward-Deny-Reason") != "audit_unavailable" {
		t.Fatalf("status %d %q, want 503 audit_unavailable", r.StatusCode, r.Header.Get("X-Ward-Deny-Reason"))
	}
	if e.catalog.app.count() != before {
		t.Fatal("the service saw a request that could not be recorded")
	}
	// Fail-open is an explicit choice: the same broken log behind
	// audit.FailOpen lets requests through.
	e2 := newEdgeWith(t, func(c *gateway.Config) { c.Events = audit.FailOpen{Sink: &brokenLog{}} })
	if r := e2.do("GET", "/catalog/x", "", "", nil); r.StatusCode != 200 {
		t.Fatalf("fail-open: %d", r.StatusCode)
	}
}

// failingAppend says it is ready but cannot take a record: a disk that
// fills between the readiness check and the append.
type failingAppend struct{ audit.Recorder }

func (b *failingAppend) Emit(ctx context.Context, e audit.Event) error {
	_ = b.Recorder.Emit(ctx, e)
	return errors.New("audit log: disk full")
}

// stalledLog reports a stalled disk (audit.ErrStalled: a write has hung)
// though an append might still get through.
type stalledLog struct{ audit.Recorder }

func (*stalledLog) Ready() error { return audit.ErrStalled }

// TestStalledLogRefusesAtOnce (issue 13): while the log reports a stalled
// write, requests are refused 503 audit_unavailable before their body is
// read or a record is queued behind the stuck write, and the service sees
// nothing.
func TestStalledLogRefusesAtOnce(t *testing.T) {
	log := &stalledLog{}
	e := newEdgeWith(t, func(c *gateway.Config) { c.Events = log })
	before := e.catalog.app.count()
	r := e.do("GET", "/catalog/x", "", "", nil)
	if r.StatusCode != 503 || r.Header.Get("X-Ward-Deny-Reason") != "audit_unavailable" {
		t.Fatalf("status %d %q, want 503 audit_unavailable", r.StatusCode, r.Header.Get("X-Ward-Deny-Reason"))
	}
	if e.catalog.app.count() != before {
		t.Fatal("the service saw a request while the log was stalled")
	}
}

// TestDecisionRecordedBeforeForwarding (issue 13): the decision is
// appended before the service sees the request; an append that fails,
// though the log looked ready, refuses the request and the service sees
// nothing.
func TestDecisionRecordedBeforeForwarding(t *testing.T) {
	log := &failingAppend{}
	e := newEdgeWith(t, func(c *gateway.Config) { c.Events = log })
	before := e.catalog.app.count()
	r := e.do("GET", "/catalog/x", "", "", nil)
	if r.StatusCode != 503 || r.Header.Get("X-Ward-Deny-Reason") != "audit_unavailable" {
		t.Fatalf("status %d %q, want 503 audit_unavailable", r.StatusCode, r.Header.Get("X-Ward-Deny-Reason"))
	}
	if e.catalog.app.count() != before {
		t.Fatal("the service saw a request whose decision could not be recorded")
	}
	var allow, deny int
	for _, ev := range log.Events() {
		if ev.Type == "gateway.request" && ev.Decision == "allow" {
			allow++
		}
		if ev.Type == "gateway.request" && ev.Decision == "deny" && ev.Reason == "audit_unavailable" {
			deny++
		}
	}
	if allow != 1 || deny != 1 {
		t.Fatalf("records tried: %d allow, %d deny audit_unavailable; want the allow attempted first, then the refusal", allow, deny)
	}
}

// TestDefaultDenyAtTheEdge: a Route to a service that no AccessPolicy
// opens is refused (no_policy), whatever the caller presents.
func TestDefaultDenyAtTheEdge(t *testing.T) {
	e := newEdge(t)
	cfg := readConfig(t, e)
	i := strings.Index(cfg, "---\napiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: catalog-callers}")
	if i < 0 {
		t.Fatal("fixture changed: no catalog-callers policy")
	}
	e.writeConfig(cfg[:i])
	// The catalog sidecar reads the same file and may deny first (its
	// refusal, passed through, has a gateway record that allowed it):
	// wait for the gateway's own denial.
	waitReload(t, e, func() bool {
		r := e.do("GET", "/catalog/x", "", "", nil)
		if r.StatusCode != 403 {
			return false
		}
		ev := findEvent(t, e.events, r.Header.Get(gateway.HeaderRequestID))
		return ev.Decision == "deny" && ev.Reason == "no_policy"
	})
	e.expectRefused(t, e.do("GET", "/catalog/x", e.apiKey, e.jwt("alice", "orders:read", nil), nil), refusal{403, "no_policy"}, e.catalog.app.count(), e.catalog.app)
}

// TestRouteConditionAtTheEdge: a Route's auth.when must hold for the
// request to pass; one that does not hold is refused with its reason and
// never reaches the service.
func TestRouteConditionAtTheEdge(t *testing.T) {
	e := newEdge(t)
	before := e.catalog.app.count()
	for name, hdr := range map[string]map[string]string{
		"no tier":     nil,
		"silver tier": {"X-Tier": "silver"},
	} {
		resp := e.do("GET", "/catalog/gold/x", "", "", hdr)
		if body := bodyOf(resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, gateway.ReasonConditionFailed) {
			t.Errorf("%s: status %d %q, want 403 %s", name, resp.StatusCode, body, gateway.ReasonConditionFailed)
		}
	}
	if n := e.catalog.app.count(); n != before {
		t.Fatalf("refused requests reached the service: %d calls, want %d", n, before)
	}
	if resp := e.do("GET", "/catalog/gold/x", "", "", map[string]string{"X-Tier": "gold"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("gold tier: status %d %s, want 200", resp.StatusCode, bodyOf(resp))
	}
}
