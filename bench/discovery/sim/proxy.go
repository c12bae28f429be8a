package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wardsec/ward/internal/control"
)

// proxy is a simulated sidecar of service idx: it long-polls its
// snapshot with the service's SVID, as a sidecar's control.Follower does,
// and reads the endpoints of the Service documents in it.
type proxy struct {
	idx    int
	client *control.Client
	tr     *tracker
	// docs caches the parse of each Service document of the previous
	// snapshot by its text, so that an answer costs the proxy the
	// documents that changed, not the whole part.
	docs map[string]svcDoc
}

type svcDoc struct {
	svc int
	eps map[string]bool
}

func (p *proxy) run(ctx context.Context) {
	after, wait := int64(-1), time.Duration(0)
	last := ""
	for ctx.Err() == nil {
		s, err := p.client.Snapshot(ctx, after, wait)
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.tr.errs.Add(1)
			failf("snapshot", "%s: snapshot: %v", svcName(p.idx), err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		p.tr.snaps.Add(1)
		p.tr.bytes.Add(int64(len(s.Documents)))
		after, wait = s.Next(), 30*time.Second
		if s.Documents == last {
			continue
		}
		last = s.Documents
		p.tr.observe(p.idx, p.endpoints(s.Documents), now)
	}
}

// endpoints returns the endpoints of every Service document named
// svc-N in docs, by N.
func (p *proxy) endpoints(docs string) map[int]map[string]bool {
	out := map[int]map[string]bool{}
	next := make(map[string]svcDoc, len(p.docs))
	for doc := range strings.SplitSeq(docs, "\n---\n") {
		if !strings.Contains(doc, "kind: Service\n") {
			continue
		}
		d, ok := p.docs[doc]
		if !ok {
			if d, ok = parseService(doc); !ok {
				continue
			}
		}
		next[doc] = d
		out[d.svc] = d.eps
	}
	p.docs = next
	return out
}

func parseService(doc string) (svcDoc, bool) {
	var v struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			Endpoints []string `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil || v.Kind != "Service" {
		return svcDoc{}, false
	}
	n, err := strconv.Atoi(strings.TrimPrefix(v.Metadata.Name, "svc-"))
	if err != nil || !strings.HasPrefix(v.Metadata.Name, "svc-") {
		return svcDoc{}, false
	}
	d := svcDoc{svc: n, eps: make(map[string]bool, len(v.Spec.Endpoints))}
	for _, e := range v.Spec.Endpoints {
		d.eps[e] = true
	}
	return d, true
}
