package control

import (
	"bytes"
	"context"
	"crypto"
	cryptorand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/retry"
)

// Client talks to a Ward server. It verifies that the server presents
// spiffe://<td>/ward/server chained to the trust bundle; it never trusts
// the system roots.
type Client struct {
	// bases are the servers' URLs; requests go to bases[cur] and move on
	// to the next one when it cannot be reached (several servers on one
	// PostgreSQL serve the same state).
	bases  []string
	cur    atomic.Int32
	bundle func() *identity.Bundle
	// cred returns the client credential for operator and gateway calls
	// (may return nil).
	cred func() *tls.Certificate

	mu     sync.Mutex
	byCert map[any]*http.Client // one connection pool per credential (see poolKey)
}

var _ identity.Authority = (*Client)(nil)

// NewClient returns a client for the server at base (https://host:port),
// trusting bundle, authenticating with cert when non-nil. base may list
// several servers sharing one store, comma-separated: the client uses one
// and fails over to the next when it cannot be reached.
func NewClient(base string, bundle *identity.Bundle, cert *tls.Certificate) (*Client, error) {
	c := &Client{bundle: func() *identity.Bundle { return bundle },
		cred: func() *tls.Certificate { return cert }, byCert: map[any]*http.Client{}}
	for _, b := range strings.Split(base, ",") {
		u, err := url.Parse(strings.TrimSpace(b))
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("server URL %q must look like https://host:port", b)
		}
		c.bases = append(c.bases, u.Scheme+"://"+u.Host)
	}
	return c, nil
}

// Server returns the URL of the server the client uses now.
func (c *Client) Server() string { return c.bases[int(c.cur.Load())%len(c.bases)] }

// FollowCredential makes the client present cert() from now on where it
// presents its own credential (operator calls, the API key feed, edge
// certificates), typically a gateway's current SVID, which rotates:
//
//	c.FollowCredential(func() *tls.Certificate { return src.Current().TLSCertificate() })
//
// Call it before the client is used.
func (c *Client) FollowCredential(cert func() *tls.Certificate) { c.cred = cert }

// FollowBundle makes the client verify the server against bundle() from
// now on, typically the Source's bundle, which the trust feed keeps
// current: after an intermediate rotation the server presents a
// certificate that the bundle the client started with does not know.
// Call it before the client is used.
func (c *Client) FollowBundle(bundle func() *identity.Bundle) { c.bundle = bundle }

// serverID is the identity every Ward server presents.
func (c *Client) serverID() spiffeid.ID {
	id, _ := spiffeid.FromSegments(c.bundle().TrustDomain, "ward", "server")
	return id
}

// poolKey identifies a credential: by its parsed leaf when it has one, so
// that a fresh *tls.Certificate for the same SVID reuses the pool.
func poolKey(cert *tls.Certificate) any {
	if cert != nil && cert.Leaf != nil {
		return cert.Leaf
	}
	return cert
}

func (c *Client) httpClient(cert *tls.Certificate) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := poolKey(cert)
	if hc, ok := c.byCert[key]; ok {
		return hc
	}
	if len(c.byCert) > 4 { // credentials rotate: drop old pools
		for k, hc := range c.byCert {
			hc.CloseIdleConnections()
			delete(c.byCert, k)
		}
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Verification is done in VerifyConnection against the Ward bundle
		// and the server's SPIFFE ID, not against host names and system roots.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   identity.VerifyPeer(c.bundle, nil, identity.AuthorizeID(c.serverID())),
	}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	hc := &http.Client{
		Timeout: 90 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     cfg,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}
	c.byCert[key] = hc
	return hc
}

// CloseIdleConnections closes the connections to the server that carry no
// request, in every pool. A role calls it when its Run ends, so that no
// connection (and no goroutine reading one) outlives it.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.byCert {
		hc.CloseIdleConnections()
	}
}

// APIError is an error answer from the server.
type APIError struct {
	Status int
	Body   Error
}

func (e *APIError) Error() string {
	return fmt.Sprintf("server refused (%d %s): %s", e.Status, e.Body.Code, e.Body.Message)
}

// Code returns the server's reason code.
func (e *APIError) Code() string { return e.Body.Code }

// send sends one request to the current server, failing over to the next
// ones in turn when a server cannot be reached. A server that answers, even
// with an error, is not failed over from: every server serves the same
// state, so its answer stands.
func (c *Client) send(ctx context.Context, cert *tls.Certificate, method, path string, isJSON bool, body io.Reader) (*http.Response, error) {
	var data []byte
	if body != nil {
		var err error
		if data, err = io.ReadAll(body); err != nil {
			return nil, err
		}
	}
	start := int(c.cur.Load())
	var errs []error
	for i := range len(c.bases) {
		n := (start + i) % len(c.bases)
		req, err := http.NewRequestWithContext(ctx, method, c.bases[n]+path, bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		if body == nil {
			req.Body, req.GetBody, req.ContentLength = nil, nil, 0
		}
		if isJSON {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.httpClient(cert).Do(req)
		if err == nil {
			if i > 0 {
				c.cur.CompareAndSwap(int32(start), int32(n))
			}
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("ward server %s: %w", c.bases[n], err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (c *Client) do(ctx context.Context, cert *tls.Certificate, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, cert, method, path, in != nil, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &ae.Body) != nil || ae.Body.Message == "" {
			ae.Body = Error{Code: "http", Message: http.StatusText(resp.StatusCode)}
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if p, ok := out.(*[]byte); ok {
		*p = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode server answer: %w", err)
	}
	return nil
}

// Enroll implements identity.Authority.
func (c *Client) Enroll(ctx context.Context, token string, csrDER []byte) ([]byte, []byte, error) {
	var out SVIDResponse
	if err := c.do(ctx, nil, http.MethodPost, PathEnroll, EnrollRequest{Token: token, CSR: csrDER}, &out); err != nil {
		return nil, nil, err
	}
	return []byte(out.SVID), []byte(out.Bundle), nil
}

// Renew implements identity.Authority. Connections are pooled per
// credential, so the server always sees the credential being renewed.
func (c *Client) Renew(ctx context.Context, current *tls.Certificate, csrDER []byte) ([]byte, []byte, error) {
	var out SVIDResponse
	if err := c.do(ctx, current, http.MethodPost, PathRenew, RenewRequest{CSR: csrDER}, &out); err != nil {
		return nil, nil, err
	}
	return []byte(out.SVID), []byte(out.Bundle), nil
}

// Trust implements identity.Authority.
func (c *Client) Trust(ctx context.Context, current *tls.Certificate, after int64, wait time.Duration) (identity.TrustUpdate, error) {
	var out TrustResponse
	path := PathTrust + "?after=" + strconv.FormatInt(after, 10) + "&wait=" + wait.String()
	if err := c.do(ctx, current, http.MethodGet, path, nil, &out); err != nil {
		return identity.TrustUpdate{}, err
	}
	return identity.TrustUpdate{Version: out.Version, Serials: out.Serials, BundlePEM: []byte(out.Bundle)}, nil
}

// CreateToken asks for a join token for id.
func (c *Client) CreateToken(ctx context.Context, id string, ttl time.Duration) (TokenResponse, error) {
	var out TokenResponse
	err := c.do(ctx, c.cred(), http.MethodPost, PathTokens, TokenRequest{ID: id, TTL: ttl.String()}, &out)
	return out, err
}

// ListCerts lists the inventory; all includes expired certificates.
func (c *Client) ListCerts(ctx context.Context, id string, all bool) ([]CertInfo, error) {
	q := url.Values{}
	if id != "" {
		q.Set("id", id)
	}
	if all {
		q.Set("all", "1")
	}
	var out []CertInfo
	err := c.do(ctx, c.cred(), http.MethodGet, PathCerts+"?"+q.Encode(), nil, &out)
	return out, err
}

// Revoke revokes by serial or SPIFFE ID.
func (c *Client) Revoke(ctx context.Context, req RevokeRequest) (RevokeResponse, error) {
	var out RevokeResponse
	err := c.do(ctx, c.cred(), http.MethodPost, PathRevoke, req, &out)
	return out, err
}

// Authorities lists the CA certificates.
func (c *Client) Authorities(ctx context.Context) ([]AuthorityInfo, error) {
	var out []AuthorityInfo
	err := c.do(ctx, c.cred(), http.MethodGet, PathAuthorities, nil, &out)
	return out, err
}

// Rotate introduces a new intermediate.
func (c *Client) Rotate(ctx context.Context) (AuthorityInfo, error) {
	var out AuthorityInfo
	err := c.do(ctx, c.cred(), http.MethodPost, PathRotate, struct{}{}, &out)
	return out, err
}

// Retire removes a retiring intermediate from the bundle.
func (c *Client) Retire(ctx context.Context, id string, force bool) error {
	return c.do(ctx, c.cred(), http.MethodPost, PathRetire, RetireRequest{ID: id, Force: force}, nil)
}

// Bundle fetches the current trust bundle (PEM).
func (c *Client) Bundle(ctx context.Context) ([]byte, error) {
	var out []byte
	err := c.do(ctx, nil, http.MethodGet, PathBundle, nil, &out)
	return out, err
}

// CreateAPIKey creates an API key for app valid on routes (route names, or
// "*") for ttl (zero: no expiry). The answer holds the only copy of the key.
func (c *Client) CreateAPIKey(ctx context.Context, app string, routes []string, ttl time.Duration) (APIKeyCreated, error) {
	req := APIKeyRequest{App: app, Routes: routes}
	if ttl != 0 {
		req.TTL = ttl.String()
	}
	var out APIKeyCreated
	err := c.do(ctx, c.cred(), http.MethodPost, PathAPIKeys, req, &out)
	return out, err
}

// ListAPIKeys lists every API key, without secret material.
func (c *Client) ListAPIKeys(ctx context.Context) ([]APIKeyInfo, error) {
	var out []APIKeyInfo
	err := c.do(ctx, c.cred(), http.MethodGet, PathAPIKeys, nil, &out)
	return out, err
}

// RevokeAPIKey revokes the API key with prefix and returns it as stored.
// Revoking a revoked key succeeds and changes nothing.
func (c *Client) RevokeAPIKey(ctx context.Context, prefix string) (APIKeyInfo, error) {
	var out APIKeyInfo
	err := c.do(ctx, c.cred(), http.MethodPost, PathAPIKeyRevoke, APIKeyRevokeRequest{Prefix: prefix}, &out)
	return out, err
}

// APIKeyFeed polls the API key feed once: it answers when the version
// exceeds after, or after wait with the current state. Gateways only.
func (c *Client) APIKeyFeed(ctx context.Context, after int64, wait time.Duration) (APIKeyFeed, error) {
	var out APIKeyFeed
	path := PathAPIKeyFeed + "?after=" + strconv.FormatInt(after, 10) + "&wait=" + wait.String()
	err := c.do(ctx, c.cred(), http.MethodGet, path, nil, &out)
	return out, err
}

// APIKeyRecords turns a feed into the records authn authenticates with. It
// refuses the whole feed if one entry is malformed, so that a gateway never
// applies half a table.
func APIKeyRecords(feed APIKeyFeed) ([]authn.APIKeyRecord, error) {
	recs := make([]authn.APIKeyRecord, len(feed.Keys))
	for i, k := range feed.Keys {
		h, err := hex.DecodeString(k.Hash)
		if err != nil || len(h) != len(recs[i].Hash) || k.Prefix == "" || k.App == "" || len(k.Scopes) == 0 {
			return nil, fmt.Errorf("api key feed version %d: entry %d (%q) is malformed", feed.Version, i, k.Prefix)
		}
		recs[i] = authn.APIKeyRecord{ID: k.App, Prefix: k.Prefix, Scopes: k.Scopes, Expires: k.Expires, Revoked: k.Revoked}
		copy(recs[i].Hash[:], h)
	}
	return recs, nil
}

// How FollowAPIKeys polls.
const (
	feedWait         = 30 * time.Second
	feedRetryBase    = time.Second
	feedRetryCeiling = 30 * time.Second
)

// FollowAPIKeys long-polls the API key feed until ctx ends and calls fn
// with every new version and the whole set of keys, which the caller
// replaces its table with. Failures are retried with jittered exponential
// backoff while the caller keeps its last table; a refusal that retrying
// cannot fix (403: the credential is not a gateway's; 400) is returned. It
// returns nil when ctx is canceled. fn runs on FollowAPIKeys' goroutine.
func (c *Client) FollowAPIKeys(ctx context.Context, fn func(version int64, recs []authn.APIKeyRecord)) error {
	after := int64(-1)
	for failures := 0; ; {
		pollCtx, cancel := context.WithTimeout(ctx, feedWait+30*time.Second)
		feed, err := c.APIKeyFeed(pollCtx, after, feedWait)
		cancel()
		var recs []authn.APIKeyRecord
		if err == nil && feed.Version > after {
			recs, err = APIKeyRecords(feed)
		}
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return ctx.Err()
		}
		var ae *APIError
		if errors.As(err, &ae) && (ae.Status == http.StatusForbidden || ae.Status == http.StatusBadRequest) {
			return fmt.Errorf("api key feed: %w", err)
		}
		if err != nil {
			failures++
			if !retry.Sleep(ctx, retry.Backoff(failures, feedRetryBase, feedRetryCeiling)) {
				return nil
			}
			continue
		}
		failures = 0
		if feed.Version > after {
			after = feed.Version
			fn(feed.Version, recs)
		}
	}
}

// EdgeCertificate asks for a TLS server certificate for names (DNS names,
// "*.domain", IP addresses, each allowed by the server's --edge-names) for
// key, and returns it with its chain, ready for a tls.Config. Gateways only.
func (c *Client) EdgeCertificate(ctx context.Context, key crypto.Signer, names []string) (*tls.Certificate, error) {
	csr, err := x509.CreateCertificateRequest(cryptorand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("edge certificate request: %w", err)
	}
	var out EdgeCertResponse
	if err := c.do(ctx, c.cred(), http.MethodPost, PathEdgeCert, EdgeCertRequest{CSR: csr, Names: names}, &out); err != nil {
		return nil, err
	}
	chain, err := identity.ParseCertsPEM([]byte(out.Chain))
	if err != nil {
		return nil, fmt.Errorf("edge certificate from the server: %w", err)
	}
	if len(chain) == 0 || !publicKeyEqual(chain[0].PublicKey, key.Public()) {
		return nil, errors.New("edge certificate from the server is not for our key")
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		cert.Certificate = append(cert.Certificate, x.Raw)
	}
	return cert, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// ShipAudit sends records of this proxy's local audit log logID to the
// server, in increasing seq order, and returns the highest seq of that log
// the server has recorded durably.
func (c *Client) ShipAudit(ctx context.Context, logID string, recs []ShippedRecord) (uint64, error) {
	return c.ShipAuditBatch(ctx, AuditBatch{LogID: logID, Records: recs})
}

// ShipAuditBatch is ShipAudit with the whole batch, From included.
func (c *Client) ShipAuditBatch(ctx context.Context, b AuditBatch) (uint64, error) {
	var ack AuditAck
	if err := c.do(ctx, c.cred(), http.MethodPost, PathAudit, b, &ack); err != nil {
		return 0, err
	}
	return ack.Acked, nil
}
