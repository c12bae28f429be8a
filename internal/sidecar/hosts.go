package sidecar

import (
	"errors"
	"slices"
	"sync"
)

var errNoHealthyHost = errors.New("no healthy endpoint")

// hostSet round-robins over a service's endpoints.
type hostSet struct {
	mu    sync.Mutex
	hosts []string
	next  int
}

func newHostSet(hosts []string) *hostSet { return &hostSet{hosts: slices.Clone(hosts)} }

func (h *hostSet) set(hosts []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Equal(h.hosts, hosts) {
		h.hosts = slices.Clone(hosts)
	}
}

func (h *hostSet) pick() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.hosts) == 0 {
		return "", errNoHealthyHost
	}
	h.next = (h.next + 1) % len(h.hosts)
	return h.hosts[h.next], nil
}

func (h *hostSet) report(string, bool) {}
