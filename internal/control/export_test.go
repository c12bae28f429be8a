package control

import (
	"context"
)

// Raw sends in as JSON (nil: no body) with the client's credential and
// returns the raw answer, so tests can send what the typed methods cannot
// and see exactly what the server sends.
func (c *Client) Raw(ctx context.Context, method, path string, in any) (string, error) {
	var out []byte
	err := c.do(ctx, c.cred(), method, path, in, &out)
	return string(out), err
}
