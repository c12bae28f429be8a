package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/store"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	ca     *ca.CA
	store  store.Store
	events *audit.Recorder
	clock  *clock
	kek    *ca.KEK
	path   string
}

func newKEK(t testing.TB) *ca.KEK {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	k, err := ca.NewKEK(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ward.db")
	st, err := store.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{store: st, events: &audit.Recorder{}, clock: &clock{t: time.Now()}, kek: newKEK(t), path: path}
	f.ca, err = ca.New(ctx, f.config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) config() ca.Config {
	return ca.Config{TrustDomain: td, Store: f.store, KEK: f.kek, PublicURL: "http://127.0.0.1:8441", Events: f.events, Now: f.clock.Now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func (f *fixture) token(t *testing.T, id string) string {
	t.Helper()
	tok, _, err := f.ca.CreateToken(context.Background(), spiffeid.RequireFromString(id), 10*time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func csrFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func uri(s string) *url.URL { u, _ := url.Parse(s); return u }

func (f *fixture) certCount(t *testing.T) int {
	t.Helper()
	certs, err := f.store.ListCertificates(context.Background(), store.CertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

func (f *fixture) enroll(t *testing.T, id string) (*ca.Issued, crypto.Signer) {
	t.Helper()
	key := p256(t)
	iss, err := f.ca.Enroll(context.Background(), f.token(t, id), csrFor(t, key, nil), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return iss, key
}

func TestEnrollIssuesSVID(t *testing.T) {
	f := newFixture(t)
	key := p256(t)
	const id = "spiffe://example.org/svc/orders"
	iss, err := f.ca.Enroll(context.Background(), f.token(t, id), csrFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{uri(id)}}), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := iss.Cert
	if len(c.URIs) != 1 || c.URIs[0].String() != id || len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses) != 0 {
		t.Errorf("SANs: uris %v dns %v ip %v", c.URIs, c.DNSNames, c.IPAddresses)
	}
	if c.IsCA || !c.BasicConstraintsValid {
		t.Error("leaf must carry basic constraints CA:false")
	}
	if len(c.ExtKeyUsage) != 2 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || c.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU = %v", c.ExtKeyUsage)
	}
	if life := c.NotAfter.Sub(f.clock.Now()); life < 59*time.Minute || life > time.Hour {
		t.Errorf("lifetime %s, want 1h", life)
	}
	if !key.PublicKey.Equal(c.PublicKey) {
		t.Error("certificate does not carry the CSR's key")
	}
	if len(c.CRLDistributionPoints) != 1 || len(c.OCSPServer) != 1 {
		t.Errorf("CDP %v OCSP %v", c.CRLDistributionPoints, c.OCSPServer)
	}
	got, err := f.ca.Bundle().VerifySVID(c, f.clock.Now())
	if err != nil || got.String() != id {
		t.Fatalf("bundle verification: %v %v", got, err)
	}
	// go-spiffe, an implementation we did not write, accepts it.
	var raw []byte
	for _, x := range iss.Chain {
		raw = append(raw, x.Raw...)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	sv, err := x509svid.ParseRaw(raw, keyDER)
	if err != nil {
		t.Fatalf("go-spiffe rejects the SVID: %v", err)
	}
	if sv.ID.String() != id {
		t.Errorf("go-spiffe id = %s", sv.ID)
	}
	rec, err := f.store.GetCertificate(context.Background(), ca.SerialText(c.SerialNumber))
	if err != nil || rec.SPIFFEID != id {
		t.Fatalf("not in inventory: %v", err)
	}
	if !hasEvent(f.events, "ca.enroll", "allow", "") || !hasEvent(f.events, "ca.token.create", "allow", "") {
		t.Errorf("events: %+v", f.events.Events())
	}
}

func hasEvent(r *audit.Recorder, typ, decision, reason string) bool {
	for _, e := range r.Events() {
		if e.Type == typ && e.Decision == decision && (reason == "" || e.Reason == reason) {
			return true
		}
	}
	return false
}

func code(err error) string {
	var r *ca.Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}

// csrWithExtension builds a CSR carrying a raw extension.
func csrWithExtension(t *testing.T, ext pkix.Extension) []byte {
	return csrFor(t, p256(t), &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext}})
}

func TestEnrollRefusals(t *testing.T) {
	const id = "spiffe://example.org/svc/orders"
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caExt, _ := asn1.Marshal(struct{ IsCA bool }{true})
	otherName, _ := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: []byte{0x06, 0x01, 0x2a}}})

	tests := []struct {
		name string
		csr  func(t *testing.T) []byte
		tok  func(t *testing.T, f *fixture) string
		code string
		// tokenStaysUsable: a refused CSR must not burn the token.
		tokenStaysUsable bool
	}{
		{name: "garbage CSR", csr: func(*testing.T) []byte { return []byte("not a csr") }, code: "bad_csr", tokenStaysUsable: true},
		{name: "empty CSR", csr: func(*testing.T) []byte { return nil }, code: "bad_csr", tokenStaysUsable: true},
		{name: "bad signature", csr: func(t *testing.T) []byte {
			der := csrFor(t, p256(t), nil)
			der[len(der)-3] ^= 0xff
			return der
		}, code: "bad_csr", tokenStaysUsable: true},
		{name: "asks for CA", csr: func(t *testing.T) []byte {
			return csrWithExtension(t, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caExt})
		}, code: "bad_csr", tokenStaysUsable: true},
		{name: "extra DNS SAN", csr: func(t *testing.T) []byte {
			return csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{uri(id)}, DNSNames: []string{"evil.example"}})
		}, code: "bad_csr", tokenStaysUsable: true},
		{name: "two URI SANs", csr: func(t *testing.T) []byte {
			return csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{uri(id), uri("spiffe://example.org/svc/admin")}})
		}, code: "bad_csr", tokenStaysUsable: true},
		{name: "other identity than the token", csr: func(t *testing.T) []byte {
			return csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{uri("spiffe://example.org/svc/payments")}})
		}, code: "bad_csr", tokenStaysUsable: true},
		{name: "otherName SAN", csr: func(t *testing.T) []byte {
			return csrWithExtension(t, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: otherName})
		}, code: "bad_csr", tokenStaysUsable: true},
		{name: "RSA 1024", csr: func(t *testing.T) []byte { return csrFor(t, rsa1024, nil) }, code: "bad_csr", tokenStaysUsable: true},
		{name: "P-224", csr: func(t *testing.T) []byte { return csrFor(t, p224, nil) }, code: "bad_csr", tokenStaysUsable: true},
		{name: "unknown token", tok: func(*testing.T, *fixture) string { return "wjt1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, code: "token_unknown"},
		{name: "malformed token", tok: func(*testing.T, *fixture) string { return "hello" }, code: "token_malformed"},
		{name: "expired token", tok: func(t *testing.T, f *fixture) string {
			tok := f.token(t, id)
			f.clock.Add(11 * time.Minute)
			return tok
		}, code: "token_expired"},
		{name: "reused token", tok: func(t *testing.T, f *fixture) string {
			tok := f.token(t, id)
			if _, err := f.ca.Enroll(context.Background(), tok, csrFor(t, p256(t), nil), ""); err != nil {
				t.Fatal(err)
			}
			return tok
		}, code: "token_used"},
		{name: "token voided by revocation", tok: func(t *testing.T, f *fixture) string {
			f.enroll(t, id)
			tok := f.token(t, id)
			if _, err := f.ca.RevokeID(context.Background(), spiffeid.RequireFromString(id), 1, "test"); err != nil {
				t.Fatal(err)
			}
			return tok
		}, code: "token_voided"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tok := ""
			if tt.tok != nil {
				tok = tt.tok(t, f)
			} else {
				tok = f.token(t, id)
			}
			csr := csrFor(t, p256(t), nil)
			if tt.csr != nil {
				csr = tt.csr(t)
			}
			before := f.certCount(t)
			_, err := f.ca.Enroll(context.Background(), tok, csr, "127.0.0.1")
			if code(err) != tt.code {
				t.Fatalf("err = %v (code %q), want code %q", err, code(err), tt.code)
			}
			if n := f.certCount(t); n != before {
				t.Errorf("refused enrollment stored a certificate: %d -> %d", before, n)
			}
			if !hasEvent(f.events, "ca.enroll", "deny", tt.code) {
				t.Errorf("no deny event with reason %q", tt.code)
			}
			if tt.tokenStaysUsable {
				if _, err := f.ca.Enroll(context.Background(), tok, csrFor(t, p256(t), nil), ""); err != nil {
					t.Errorf("token burnt by a refused CSR: %v", err)
				}
			}
		})
	}
}

func TestCreateTokenRefusesForeignIDs(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{
		"spiffe://other.org/svc/orders",
		"spiffe://example.org/user/admin",
		"spiffe://example.org/ward/server",
		"spiffe://example.org/svc",
		"spiffe://example.org/svc/a/b",
	} {
		_, _, err := f.ca.CreateToken(context.Background(), spiffeid.RequireFromString(id), time.Minute, "test")
		if code(err) != "bad_id" {
			t.Errorf("%s: err = %v, want bad_id", id, err)
		}
	}
	for _, ttl := range []time.Duration{0, -time.Second, 8 * 24 * time.Hour} {
		if _, _, err := f.ca.CreateToken(context.Background(), spiffeid.RequireFromString("spiffe://example.org/svc/a"), ttl, "test"); code(err) != "bad_ttl" {
			t.Errorf("ttl %s: err = %v", ttl, err)
		}
	}
}

func TestTokenIsStoredOnlyAsHash(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "spiffe://example.org/svc/a")
	h, err := ca.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.store.GetToken(context.Background(), h[:], f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Hash) == tok {
		t.Fatal("token stored in the clear")
	}
	f.store.Close()
	if data := readFile(t, f.path); containsAny(data, tok) {
		t.Fatal("token text found in the store file")
	}
}

func TestConcurrentEnrollWithOneToken(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "spiffe://example.org/svc/a")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.ca.Enroll(context.Background(), tok, csrFor(t, p256(t), nil), ""); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d enrollments succeeded with one token, want 1", ok)
	}
}

func TestRenew(t *testing.T) {
	const id = "spiffe://example.org/svc/orders"
	t.Run("valid", func(t *testing.T) {
		f := newFixture(t)
		old, _ := f.enroll(t, id)
		iss, err := f.ca.Renew(context.Background(), old.Cert, csrFor(t, p256(t), nil), "")
		if err != nil {
			t.Fatal(err)
		}
		if iss.Cert.URIs[0].String() != id || iss.Cert.SerialNumber.Cmp(old.Cert.SerialNumber) == 0 {
			t.Fatalf("renewed %v serial %v", iss.Cert.URIs, iss.Cert.SerialNumber)
		}
		rec, _ := f.store.GetCertificate(context.Background(), ca.SerialText(iss.Cert.SerialNumber))
		if !rec.Renewal {
			t.Error("renewal not recorded as such")
		}
	})
	refusals := []struct {
		name  string
		setup func(t *testing.T, f *fixture) *x509.Certificate
		csr   func(t *testing.T) []byte
		code  string
	}{
		{"revoked", func(t *testing.T, f *fixture) *x509.Certificate {
			iss, _ := f.enroll(t, id)
			if _, err := f.ca.RevokeSerial(context.Background(), ca.SerialText(iss.Cert.SerialNumber), 1, "test"); err != nil {
				t.Fatal(err)
			}
			return iss.Cert
		}, nil, "revoked"},
		{"expired", func(t *testing.T, f *fixture) *x509.Certificate {
			iss, _ := f.enroll(t, id)
			f.clock.Add(2 * time.Hour)
			return iss.Cert
		}, nil, "bad_credential"},
		{"other CA", func(t *testing.T, f *fixture) *x509.Certificate {
			g := newFixture(t)
			iss, _ := g.enroll(t, id)
			return iss.Cert
		}, nil, "bad_credential"},
		{"no certificate", func(*testing.T, *fixture) *x509.Certificate { return nil }, nil, "no_credential"},
		{"CSR for another identity", func(t *testing.T, f *fixture) *x509.Certificate {
			iss, _ := f.enroll(t, id)
			return iss.Cert
		}, func(t *testing.T) []byte {
			return csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{uri("spiffe://example.org/svc/payments")}})
		}, "bad_csr"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			peer := tt.setup(t, f)
			csr := csrFor(t, p256(t), nil)
			if tt.csr != nil {
				csr = tt.csr(t)
			}
			before := f.certCount(t)
			_, err := f.ca.Renew(context.Background(), peer, csr, "")
			if code(err) != tt.code {
				t.Fatalf("err = %v, want code %q", err, tt.code)
			}
			if f.certCount(t) != before {
				t.Error("refused renewal stored a certificate")
			}
		})
	}
}

func TestRevocationList(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, _ := f.enroll(t, "spiffe://example.org/svc/a")
	b1, _ := f.enroll(t, "spiffe://example.org/svc/b")
	b2, _ := f.enroll(t, "spiffe://example.org/svc/b")
	v0, serials, err := f.ca.Revocations(ctx)
	if err != nil || len(serials) != 0 {
		t.Fatalf("fresh list: %v %v", serials, err)
	}
	if _, err := f.ca.RevokeSerial(ctx, ca.SerialText(a.Cert.SerialNumber), 1, "test"); err != nil {
		t.Fatal(err)
	}
	revoked, err := f.ca.RevokeID(ctx, spiffeid.RequireFromString("spiffe://example.org/svc/b"), 4, "test")
	if err != nil || len(revoked) != 2 {
		t.Fatalf("revoke by id: %d %v", len(revoked), err)
	}
	v1, serials, err := f.ca.Revocations(ctx)
	if err != nil || v1 <= v0 {
		t.Fatalf("version %d -> %d: %v", v0, v1, err)
	}
	want := map[string]bool{ca.SerialText(a.Cert.SerialNumber): true, ca.SerialText(b1.Cert.SerialNumber): true, ca.SerialText(b2.Cert.SerialNumber): true}
	if len(serials) != 3 {
		t.Fatalf("serials %v", serials)
	}
	for _, s := range serials {
		if !want[s] {
			t.Errorf("unexpected serial %s", s)
		}
	}
	if _, err := f.ca.RevokeSerial(ctx, "zz", 1, "test"); code(err) != "bad_serial" {
		t.Errorf("bad serial: %v", err)
	}
	if _, err := f.ca.RevokeSerial(ctx, "abcdef", 1, "test"); code(err) != "not_found" {
		t.Errorf("unknown serial: %v", err)
	}
	// A long poll returns as soon as the version moves.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	done := make(chan int64)
	go func() {
		v, _, _, _ := f.ca.WaitTrust(wctx, v1, 10*time.Millisecond)
		done <- v
	}()
	c, _ := f.enroll(t, "spiffe://example.org/svc/c")
	if _, err := f.ca.RevokeSerial(ctx, ca.SerialText(c.Cert.SerialNumber), 1, "test"); err != nil {
		t.Fatal(err)
	}
	if v := <-done; v <= v1 {
		t.Fatalf("long poll returned version %d, want > %d", v, v1)
	}
}

func TestCRLListsRevoked(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, _ := f.enroll(t, "spiffe://example.org/svc/a")
	b, _ := f.enroll(t, "spiffe://example.org/svc/b")
	issuer := a.Chain[1]
	id := hexID(issuer)
	der, err := f.ca.CRL(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil || crl.CheckSignatureFrom(issuer) != nil || len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("fresh CRL: %v entries %d", err, len(crl.RevokedCertificateEntries))
	}
	if _, err := f.ca.RevokeSerial(ctx, ca.SerialText(a.Cert.SerialNumber), 1, "test"); err != nil {
		t.Fatal(err)
	}
	der, err = f.ca.CRL(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	crl, _ = x509.ParseRevocationList(der)
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(a.Cert.SerialNumber) != 0 {
		t.Fatalf("CRL entries %+v", crl.RevokedCertificateEntries)
	}
	if crl.RevokedCertificateEntries[0].SerialNumber.Cmp(b.Cert.SerialNumber) == 0 {
		t.Fatal("unrevoked certificate listed")
	}
	if _, err := f.ca.CRL(ctx, "nope"); code(err) != "not_found" {
		t.Errorf("unknown CRL: %v", err)
	}
}

func hexID(c *x509.Certificate) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(c.SubjectKeyId))
	for _, b := range c.SubjectKeyId {
		out = append(out, digits[b>>4], digits[b&15])
	}
	return string(out)
}

func TestIntermediateRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old, _ := f.enroll(t, "spiffe://example.org/svc/a")
	f.clock.Add(time.Second) // authorities are ordered by creation time
	next, err := f.ca.Rotate(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	early, _ := f.enroll(t, "spiffe://example.org/svc/b")
	if hexID(early.Chain[1]) != hexID(old.Chain[1]) {
		t.Fatal("a new intermediate issued before every workload could have it in its bundle")
	}
	if !slices.ContainsFunc(f.ca.Bundle().Intermediates, func(c *x509.Certificate) bool { return hexID(c) == next.ID }) {
		t.Fatal("new intermediate is not published in the bundle")
	}
	f.clock.Add(ca.DefaultPublishDelay + time.Second)
	fresh, _ := f.enroll(t, "spiffe://example.org/svc/b")
	if hexID(fresh.Chain[1]) != next.ID || hexID(old.Chain[1]) == next.ID {
		t.Fatal("once published, new SVIDs must come from the new intermediate")
	}
	now := f.clock.Now()
	for _, c := range []*x509.Certificate{old.Cert, fresh.Cert} {
		if _, err := f.ca.Bundle().VerifySVID(c, now); err != nil {
			t.Fatalf("during rotation both must validate: %v", err)
		}
	}
	if err := f.ca.Retire(ctx, next.ID, false, "test"); code(err) != "active" {
		t.Fatalf("retiring the active intermediate: %v", err)
	}
	if err := f.ca.Retire(ctx, hexID(old.Chain[1]), false, "test"); code(err) != "in_use" {
		t.Fatalf("retiring an intermediate whose SVIDs are valid: %v", err)
	}
	f.clock.Add(2 * time.Hour) // every SVID of the old intermediate has expired
	now = f.clock.Now()
	fresh, _ = f.enroll(t, "spiffe://example.org/svc/b")
	if err := f.ca.Retire(ctx, hexID(old.Chain[1]), false, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ca.Bundle().VerifySVID(old.Cert, now); err == nil {
		t.Fatal("SVID of a retired intermediate still validates")
	}
	if _, err := f.ca.Bundle().VerifySVID(fresh.Cert, now); err != nil {
		t.Fatal(err)
	}
	// A second CA over the same store (another server) sees the same state.
	g, err := ca.New(ctx, f.config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(g.Bundle().PEM()) != string(f.ca.Bundle().PEM()) {
		t.Fatal("bundle differs after reopening")
	}
}

func TestKeysSealedAtRest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	auths, err := f.store.ListAuthorities(ctx)
	if err != nil || len(auths) != 2 {
		t.Fatalf("authorities: %d %v", len(auths), err)
	}
	for _, a := range auths {
		if len(a.SealedKey) == 0 {
			t.Fatalf("%s has no sealed key", a.ID)
		}
		if _, err := x509.ParsePKCS8PrivateKey(a.SealedKey); err == nil {
			t.Fatalf("%s key stored in the clear", a.ID)
		}
	}
	cfg := f.config()
	cfg.KEK = newKEK(t)
	if _, err := ca.New(ctx, cfg, nil); err == nil {
		t.Fatal("opened with the wrong key-encryption key")
	}
	cfg = f.config()
	cfg.TrustDomain = spiffeid.RequireTrustDomainFromString("other.org")
	if _, err := ca.New(ctx, cfg, nil); err == nil {
		t.Fatal("opened a store of another trust domain")
	}
}
