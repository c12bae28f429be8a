package ca_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/store"
)

func TestIssueEdge(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	gw := spiffeid.RequireFromString("spiffe://example.org/gateway/edge")
	key := p256(t)
	iss, err := f.ca.IssueEdge(ctx, gw, key.Public(), []string{"API.example.com", "*.shop.example.com", "127.0.0.1", "::1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := iss.Cert
	if len(leaf.URIs) != 0 {
		t.Errorf("edge certificate carries URIs %v: it could pass as a workload identity", leaf.URIs)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("extended key usages %v, want serverAuth only", leaf.ExtKeyUsage)
	}
	if want := []string{"api.example.com", "*.shop.example.com"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS names %v, want %v", leaf.DNSNames, want)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP addresses %v", leaf.IPAddresses)
	}
	if d := leaf.NotAfter.Sub(f.clock.Now()); d > 24*time.Hour || d < 23*time.Hour {
		t.Errorf("lifetime %s, want 24h", d)
	}
	if leaf.IsCA {
		t.Error("edge certificate is a CA")
	}

	// It chains to the bundle as a TLS server certificate for its names,
	// and not as a client certificate.
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range f.ca.Bundle().Roots {
		roots.AddCert(c)
	}
	for _, c := range f.ca.Bundle().Intermediates {
		inters.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: f.clock.Now(), DNSName: "api.example.com"}
	if _, err := leaf.Verify(opts); err != nil {
		t.Errorf("edge certificate does not verify for api.example.com: %v", err)
	}
	opts.DNSName = "a.shop.example.com"
	if _, err := leaf.Verify(opts); err != nil {
		t.Errorf("wildcard does not verify for a.shop.example.com: %v", err)
	}
	opts.DNSName = "evil.example.com"
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("edge certificate verifies for a name it does not carry")
	}
	opts.DNSName, opts.KeyUsages = "", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("edge certificate verifies as a client certificate")
	}
	if _, err := f.ca.Bundle().VerifySVID(leaf, f.clock.Now()); err == nil {
		t.Error("edge certificate passes as an SVID")
	}

	// Recorded under the gateway: revoking the gateway revokes it.
	rec, err := f.store.GetCertificate(ctx, ca.SerialText(leaf.SerialNumber))
	if err != nil {
		t.Fatalf("edge certificate not in the inventory: %v", err)
	}
	if rec.SPIFFEID != gw.String() {
		t.Errorf("inventory records it under %s, want %s", rec.SPIFFEID, gw)
	}
	revoked, err := f.ca.RevokeID(ctx, gw, 1, "test")
	if err != nil || len(revoked) != 1 || revoked[0].Serial != rec.Serial {
		t.Fatalf("RevokeID(gateway) = %v, %v; want the edge certificate", revoked, err)
	}

	ev := f.events.Events()
	last := ev[len(ev)-2] // before the revocation
	if last.Type != "ca.issue" || last.Fields["kind"] != "edge" || last.Actor != gw.String() || last.Fields["serial"] != rec.Serial {
		t.Errorf("audit event %+v", last)
	}
}

func TestIssueEdgeRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	gw := spiffeid.RequireFromString("spiffe://example.org/gateway/edge")
	key := p256(t)
	many := make([]string, ca.MaxEdgeNames+1)
	for i := range many {
		many[i] = "example.com"
	}
	for _, tt := range []struct {
		name      string
		requester spiffeid.ID
		names     []string
		ttl       time.Duration
		code      string
	}{
		{"no names", gw, nil, time.Hour, "bad_names"},
		{"empty name", gw, []string{""}, time.Hour, "bad_names"},
		{"underscore", gw, []string{"a_b.example.com"}, time.Hour, "bad_names"},
		{"bare wildcard", gw, []string{"*"}, time.Hour, "bad_names"},
		{"wildcard TLD", gw, []string{"*.com"}, time.Hour, "bad_names"},
		{"inner wildcard", gw, []string{"a.*.example.com"}, time.Hour, "bad_names"},
		{"URI", gw, []string{"spiffe://example.org/svc/a"}, time.Hour, "bad_names"},
		{"label too long", gw, []string{strings.Repeat("a", 64) + ".com"}, time.Hour, "bad_names"},
		{"leading dash", gw, []string{"-a.example.com"}, time.Hour, "bad_names"},
		{"too many", gw, many, time.Hour, "bad_names"},
		{"zero TTL", gw, []string{"localhost"}, 0, "bad_ttl"},
		{"TTL too long", gw, []string{"localhost"}, ca.MaxEdgeTTL + time.Second, "bad_ttl"},
		{"foreign requester", spiffeid.RequireFromString("spiffe://other.org/gateway/edge"), []string{"localhost"}, time.Hour, "bad_id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := f.certCount(t)
			_, err := f.ca.IssueEdge(ctx, tt.requester, key.Public(), tt.names, tt.ttl)
			var ref *ca.Refusal
			if !errors.As(err, &ref) || ref.Code != tt.code {
				t.Fatalf("got %v, want refusal %s", err, tt.code)
			}
			if f.certCount(t) != before {
				t.Fatal("a refused edge certificate was recorded")
			}
		})
	}
	if certs, err := f.store.ListCertificates(ctx, store.CertFilter{SPIFFEID: gw.String()}); err != nil || len(certs) != 0 {
		t.Fatalf("gateway has certificates %v after refusals only (%v)", certs, err)
	}
}
