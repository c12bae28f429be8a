package control

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Apply creates or replaces the objects of files (see ApplyRequest).
func (c *Client) Apply(ctx context.Context, req ApplyRequest) (ChangeResponse, error) {
	var out ChangeResponse
	err := c.do(ctx, c.cred(), http.MethodPost, PathApply, req, &out)
	return out, err
}

// Delete removes one object.
func (c *Client) Delete(ctx context.Context, req DeleteRequest) (ChangeResponse, error) {
	var out ChangeResponse
	err := c.do(ctx, c.cred(), http.MethodPost, PathDelete, req, &out)
	return out, err
}

// Rollback makes an earlier version's set current again, as a new version.
func (c *Client) Rollback(ctx context.Context, req RollbackRequest) (ChangeResponse, error) {
	var out ChangeResponse
	err := c.do(ctx, c.cred(), http.MethodPost, PathRollback, req, &out)
	return out, err
}

// Resources returns the current set, or only the objects of kind (and
// name) when given.
func (c *Client) Resources(ctx context.Context, kind, name string) (ResourcesResponse, error) {
	q := url.Values{}
	if kind != "" {
		q.Set("kind", kind)
	}
	if name != "" {
		q.Set("name", name)
	}
	var out ResourcesResponse
	err := c.do(ctx, c.cred(), http.MethodGet, PathResources+"?"+q.Encode(), nil, &out)
	return out, err
}

// History lists versions newest first: at most limit, below before when
// before > 0.
func (c *Client) History(ctx context.Context, before int64, limit int) (HistoryResponse, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out HistoryResponse
	err := c.do(ctx, c.cred(), http.MethodGet, PathHistory+"?"+q.Encode(), nil, &out)
	return out, err
}

// Version returns one version with its diff and documents.
func (c *Client) Version(ctx context.Context, version int64) (VersionInfo, error) {
	var out VersionInfo
	err := c.do(ctx, c.cred(), http.MethodGet, PathHistory+"/"+strconv.FormatInt(version, 10), nil, &out)
	return out, err
}

// Snapshot polls the caller's snapshot once: it answers when the version
// exceeds after, or after wait with the current one. Sidecars and
// gateways only.
func (c *Client) Snapshot(ctx context.Context, after int64, wait time.Duration) (SnapshotResponse, error) {
	var out SnapshotResponse
	path := PathSnapshot + "?after=" + strconv.FormatInt(after, 10) + "&wait=" + wait.String()
	err := c.do(ctx, c.cred(), http.MethodGet, path, nil, &out)
	return out, err
}

// CreateOperator creates an operator and returns their certificate.
func (c *Client) CreateOperator(ctx context.Context, req OperatorRequest) (OperatorCreated, error) {
	var out OperatorCreated
	err := c.do(ctx, c.cred(), http.MethodPost, PathOperators, req, &out)
	return out, err
}

// Operators lists the operators and their roles.
func (c *Client) Operators(ctx context.Context) ([]OperatorInfo, error) {
	var out []OperatorInfo
	err := c.do(ctx, c.cred(), http.MethodGet, PathOperators, nil, &out)
	return out, err
}
