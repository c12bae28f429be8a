package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/identity"
)

// Client talks to a Ward server. It verifies that the server presents
// spiffe://<td>/ward/server chained to the trust bundle; it never trusts
// the system roots.
type Client struct {
	base   string
	bundle func() *identity.Bundle
	// cert is the client credential for operator calls (may be nil).
	cert *tls.Certificate

	mu     sync.Mutex
	byCert map[*tls.Certificate]*http.Client // one connection pool per credential
}

var _ identity.Authority = (*Client)(nil)

// NewClient returns a client for the server at base (https://host:port),
// trusting bundle, authenticating with cert when non-nil.
func NewClient(base string, bundle *identity.Bundle, cert *tls.Certificate) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server URL %q must look like https://host:port", base)
	}
	return &Client{base: u.Scheme + "://" + u.Host, bundle: func() *identity.Bundle { return bundle }, cert: cert, byCert: map[*tls.Certificate]*http.Client{}}, nil
}

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

func (c *Client) httpClient(cert *tls.Certificate) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc, ok := c.byCert[cert]; ok {
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
	c.byCert[cert] = hc
	return hc
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

func (c *Client) do(ctx context.Context, cert *tls.Certificate, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient(cert).Do(req)
	if err != nil {
		return fmt.Errorf("ward server %s: %w", c.base, err)
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
	err := c.do(ctx, c.cert, http.MethodPost, PathTokens, TokenRequest{ID: id, TTL: ttl.String()}, &out)
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
	err := c.do(ctx, c.cert, http.MethodGet, PathCerts+"?"+q.Encode(), nil, &out)
	return out, err
}

// Revoke revokes by serial or SPIFFE ID.
func (c *Client) Revoke(ctx context.Context, req RevokeRequest) (RevokeResponse, error) {
	var out RevokeResponse
	err := c.do(ctx, c.cert, http.MethodPost, PathRevoke, req, &out)
	return out, err
}

// Authorities lists the CA certificates.
func (c *Client) Authorities(ctx context.Context) ([]AuthorityInfo, error) {
	var out []AuthorityInfo
	err := c.do(ctx, c.cert, http.MethodGet, PathAuthorities, nil, &out)
	return out, err
}

// Rotate introduces a new intermediate.
func (c *Client) Rotate(ctx context.Context) (AuthorityInfo, error) {
	var out AuthorityInfo
	err := c.do(ctx, c.cert, http.MethodPost, PathRotate, struct{}{}, &out)
	return out, err
}

// Retire removes a retiring intermediate from the bundle.
func (c *Client) Retire(ctx context.Context, id string, force bool) error {
	return c.do(ctx, c.cert, http.MethodPost, PathRetire, RetireRequest{ID: id, Force: force}, nil)
}

// Bundle fetches the current trust bundle (PEM).
func (c *Client) Bundle(ctx context.Context) ([]byte, error) {
	var out []byte
	err := c.do(ctx, nil, http.MethodGet, PathBundle, nil, &out)
	return out, err
}
