package store

import (
	"context"
	"time"
)

// ChannelInstances is the notification channel of instance set changes
// (PostgreSQL): its payload is the new instances version.
const ChannelInstances = "ward_instances"

// Instance is one registered instance of a service: the inbound address of
// one of its sidecars.
type Instance struct {
	ID       string
	Service  string
	Address  string // host:port
	SPIFFEID string // of the SVID that registered it
	Serial   string // that SVID's serial (hex)
	Labels   map[string]string
	Started  time.Time // when the sidecar started
	Renewed  time.Time // the last registration or renewal
	Expires  time.Time // Renewed + TTL
}

// Instances is the live set of registered instances. Every change to the
// set (a new address, a removal) raises InstancesVersion in the same
// transaction and, where the store has notifications, notifies
// ChannelInstances; renewals change no version.
type Instances interface {
	// PutInstance registers in: a new ID is added; an existing ID, or an
	// instance of the same service and address registered by the same
	// SPIFFE ID, is replaced. It returns the version after the change.
	PutInstance(ctx context.Context, in Instance) (int64, error)
	// RenewInstances sets Renewed and Expires of the instances ids (a
	// server batches its renewals); unknown ids are ignored. It returns
	// the ids it did not find.
	RenewInstances(ctx context.Context, ids []string, renewed, expires time.Time) (missing []string, err error)
	// DeleteInstance removes one instance; ErrNotFound if unknown.
	DeleteInstance(ctx context.Context, id string) (Instance, error)
	// ExpireInstances removes the instances whose Expires is before now
	// and returns them.
	ExpireInstances(ctx context.Context, now time.Time) ([]Instance, error)
	// DeleteInstancesBySerial removes the instances registered or last
	// renewed with one of serials (a revocation) and returns them.
	DeleteInstancesBySerial(ctx context.Context, serials []string) ([]Instance, error)
	// ListInstances returns the live instances, of one service unless
	// service is empty, ordered by service then address.
	ListInstances(ctx context.Context, service string) ([]Instance, error)
	// InstancesVersion is the number of changes made to the set so far.
	InstancesVersion(ctx context.Context) (int64, error)
}
