package gateway

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/wardsec/ward/internal/authn"
)

// KeyTable is the gateway's copy of the API keys (hashes only), replaced
// whole whenever the server's key feed has a new version. Until the first
// table arrives every lookup fails as unavailable (503), never as unknown:
// a gateway that has not heard from the server cannot tell a good key from
// a bad one.
type KeyTable struct {
	cur atomic.Pointer[map[string]authn.APIKeyRecord]
}

var _ authn.APIKeyStore = (*KeyTable)(nil)

// errNoKeys is returned before the first Replace.
var errNoKeys = errors.New("API keys not received from the server yet")

// Replace installs recs as the whole table.
func (t *KeyTable) Replace(recs []authn.APIKeyRecord) {
	m := make(map[string]authn.APIKeyRecord, len(recs))
	for _, r := range recs {
		m[r.Prefix] = r
	}
	t.cur.Store(&m)
}

// Len is the number of keys in the table (-1 before the first Replace).
func (t *KeyTable) Len() int {
	m := t.cur.Load()
	if m == nil {
		return -1
	}
	return len(*m)
}

// Get implements authn.APIKeyStore.
func (t *KeyTable) Get(_ context.Context, prefix string) (authn.APIKeyRecord, error) {
	m := t.cur.Load()
	if m == nil {
		return authn.APIKeyRecord{}, errNoKeys
	}
	rec, ok := (*m)[prefix]
	if !ok {
		return authn.APIKeyRecord{}, authn.ErrAPIKeyNotFound
	}
	return rec, nil
}
