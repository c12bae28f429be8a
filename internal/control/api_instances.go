package control

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Service discovery: a sidecar registers its service's instance (its own
// inbound address) with its SVID, renews it while it runs and deregisters
// it on a clean stop. The server expires an instance not renewed within
// its TTL, and merges the live instances into the endpoints of the Service
// documents it hands each proxy in its snapshot.
const (
	// PathInstances: POST InstanceRegistration (a sidecar, mTLS with the
	// SVID svc/NAME of the service it registers); GET ?service=S (any
	// operator): []Instance.
	PathInstances = "/v1/instances"
	// PathInstance: POST /v1/instances/{id}/renew and DELETE
	// /v1/instances/{id}, by the sidecar that registered it (the same
	// SPIFFE ID). 404 instance_gone when the server no longer has it: the
	// sidecar registers again.
	PathInstance = "/v1/instances/"
)

// InstanceRegistration is what a sidecar announces. Address is host:port
// where callers reach its inbound mutual TLS listener. The host must be
// an address of the caller itself as the server sees the connection; an
// unspecified host (0.0.0.0 or ::) is replaced by that address.
type InstanceRegistration struct {
	Service string            `json:"service"`
	Address string            `json:"address"`
	Labels  map[string]string `json:"labels,omitempty"` // e.g. version, zone
	// Started is when the sidecar started (RFC 3339).
	Started time.Time `json:"started"`
}

// Instance is one live instance of a service, as the server keeps it.
type Instance struct {
	ID       string            `json:"id"`
	Service  string            `json:"service"`
	Address  string            `json:"address"`
	SPIFFEID string            `json:"spiffeId"`
	Serial   string            `json:"serial"` // of the SVID that registered or last renewed it
	Labels   map[string]string `json:"labels,omitempty"`
	Started  time.Time         `json:"started"`
	Renewed  time.Time         `json:"renewed"`
	Expires  time.Time         `json:"expires"`
	// TTL is how long the instance lives without a renewal; the sidecar
	// renews well within it (a third of it).
	TTL string `json:"ttl"`
}

// RegisterInstance registers this sidecar's instance with the client's
// credential.
func (c *Client) RegisterInstance(ctx context.Context, reg InstanceRegistration) (Instance, error) {
	var out Instance
	err := c.do(ctx, c.cred(), http.MethodPost, PathInstances, reg, &out)
	return out, err
}

// RenewInstance keeps instance id alive. An *APIError with Code
// "instance_gone" says the server no longer has it.
func (c *Client) RenewInstance(ctx context.Context, id string) (Instance, error) {
	var out Instance
	err := c.do(ctx, c.cred(), http.MethodPost, PathInstance+url.PathEscape(id)+"/renew", nil, &out)
	return out, err
}

// DeregisterInstance removes instance id at once (a clean stop).
func (c *Client) DeregisterInstance(ctx context.Context, id string) error {
	return c.do(ctx, c.cred(), http.MethodDelete, PathInstance+url.PathEscape(id), nil, nil)
}

// Instances lists the live instances, of one service when service is
// not empty.
func (c *Client) Instances(ctx context.Context, service string) ([]Instance, error) {
	path := PathInstances
	if service != "" {
		path += "?service=" + url.QueryEscape(service)
	}
	var out []Instance
	err := c.do(ctx, c.cred(), http.MethodGet, path, nil, &out)
	return out, err
}

// CodeInstanceGone is the error code of a renewal or deregistration of an
// instance the server no longer has.
const CodeInstanceGone = "instance_gone"
