// Package storetest is the behaviour every store.Store must have, as one
// test suite that each implementation runs against itself.
package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/store"
)

// Run runs the suite. open returns a new, empty store for one test and
// arranges for it to be closed when the test ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Authorities", testAuthorities},
		{"GetToken", testGetToken},
		{"Enroll", testEnroll},
		{"EnrollFailureRecordsNothing", testEnrollFailure},
		{"Certificates", testCertificates},
		{"ListCertificates", testListCertificates},
		{"CountExpiring", testCountExpiring},
		{"RevokeSerial", testRevokeSerial},
		{"RevokeID", testRevokeID},
		{"Revocations", testRevocations},
		{"Meta", testMeta},
		{"ConcurrentEnrollSameToken", testConcurrentEnrollSameToken},
		{"ConcurrentWrites", testConcurrentWrites},
		{"ConcurrentRevokes", testConcurrentRevokes},
		{"RevokeRacesEnroll", testRevokeRacesEnroll},
		{"Renew", testRenew},
		{"RevokeRacesRenew", testRevokeRacesRenew},
		{"APIKeys", testAPIKeys},
		{"ConcurrentAPIKeys", testConcurrentAPIKeys},
		{"ResourceVersions", testResourceVersions},
		{"ConcurrentResourceVersions", testConcurrentResourceVersions},
		{"EmptyResourceSet", testEmptyResourceSet},
		{"Operators", testOperators},
		{"Secrets", testSecrets},
		{"SecretTombstones", testSecretTombstones},
		{"RewrapSecrets", testRewrapSecrets},
		{"ConcurrentSecretVersions", testConcurrentSecretVersions},
		{"Flows", testFlows},
		{"Instances", testInstances},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// t0 is the suite's "now". Stores keep microseconds, so tests use whole ones.
var t0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func hash(text string) []byte {
	h := sha256.Sum256([]byte(text))
	return h[:]
}

func newToken(text, id string, expires time.Time) store.Token {
	return store.Token{Hash: hash(text), SPIFFEID: id, CreatedBy: "spiffe://test/operator", CreatedAt: t0.Add(-time.Hour), ExpiresAt: expires}
}

func newCert(serial, id string, notBefore time.Time, life time.Duration) store.Certificate {
	return store.Certificate{
		Serial: serial, SPIFFEID: id, IssuerID: "int-1",
		NotBefore: notBefore, NotAfter: notBefore.Add(life),
		DER: []byte("DER of " + serial),
	}
}

func revoked(c store.Certificate, reason int, at time.Time) store.Certificate {
	c.RevokedAt, c.RevocationReason = at, reason
	return c
}

func serials(cs []store.Certificate) []string {
	s := []string{}
	for _, c := range cs {
		s = append(s, c.Serial)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func wantEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\ngot  %+v\nwant %+v", what, got, want)
	}
}

// wantCerts is wantEqual that takes nil and empty alike.
func wantCerts(t *testing.T, what string, got, want []store.Certificate) {
	t.Helper()
	if len(got) != 0 || len(want) != 0 {
		wantEqual(t, what, got, want)
	}
}

func insert(t *testing.T, s store.Store, cs ...store.Certificate) {
	t.Helper()
	for _, c := range cs {
		must(t, s.InsertCertificate(t.Context(), c))
	}
}

func wantVersion(t *testing.T, s store.Store, want int64) {
	t.Helper()
	v, err := s.RevocationVersion(t.Context())
	must(t, err)
	if v != want {
		t.Fatalf("revocation version %d, want %d", v, want)
	}
}

func wantTokenErr(t *testing.T, s store.Store, text string, now time.Time, want error) {
	t.Helper()
	_, err := s.GetToken(t.Context(), hash(text), now)
	if !errors.Is(err, want) { // want may be nil
		t.Fatalf("GetToken(%s): got error %v, want %v", text, err, want)
	}
}

func testAuthorities(t *testing.T, s store.Store) {
	ctx := t.Context()
	as, err := s.ListAuthorities(ctx)
	must(t, err)
	if len(as) != 0 {
		t.Fatalf("new store has authorities: %+v", as)
	}

	root := store.Authority{ID: "root", Kind: store.KindRoot, CertDER: []byte("root DER"), SealedKey: []byte("sealed root"), State: store.AuthorityActive, CreatedAt: t0}
	int1 := store.Authority{ID: "int-1", Kind: store.KindIntermediate, CertDER: []byte("int-1 DER"), SealedKey: []byte("sealed 1"), State: store.AuthorityActive, CreatedAt: t0.Add(time.Hour)}
	int0 := store.Authority{ID: "int-0", Kind: store.KindIntermediate, CertDER: []byte("int-0 DER"), State: store.AuthorityRetiring, CreatedAt: t0.Add(-time.Hour)}
	for _, a := range []store.Authority{root, int1, int0} {
		must(t, s.PutAuthority(ctx, a))
	}
	dup := int1
	dup.CertDER = []byte("other")
	wantErr(t, "PutAuthority(duplicate)", s.PutAuthority(ctx, dup), store.ErrExists)
	bad := store.Authority{ID: "bad", Kind: "sub", CertDER: []byte("x"), State: store.AuthorityActive}
	if err := s.PutAuthority(ctx, bad); err == nil {
		t.Fatal("PutAuthority accepted an unknown kind")
	}

	as, err = s.ListAuthorities(ctx)
	must(t, err)
	wantEqual(t, "authorities oldest first", as, []store.Authority{int0, root, int1})

	must(t, s.SetAuthorityState(ctx, "int-1", store.AuthorityRetiring))
	must(t, s.SetAuthorityState(ctx, "int-0", store.AuthorityRetired))
	wantErr(t, "SetAuthorityState(unknown)", s.SetAuthorityState(ctx, "nope", store.AuthorityRetired), store.ErrNotFound)
	if err := s.SetAuthorityState(ctx, "root", "sleeping"); err == nil {
		t.Fatal("SetAuthorityState accepted an unknown state")
	}
	int1.State, int0.State = store.AuthorityRetiring, store.AuthorityRetired
	as, err = s.ListAuthorities(ctx)
	must(t, err)
	wantEqual(t, "authorities after state changes", as, []store.Authority{int0, root, int1})
}

func testGetToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	later := t0.Add(time.Hour)
	for _, tok := range []store.Token{
		newToken("fresh", "spiffe://test/a", later),
		newToken("used", "spiffe://test/a", later),
		newToken("used-expires", "spiffe://test/a", t0.Add(time.Minute)),
		newToken("voided", "spiffe://test/v", later),
		newToken("voided-expired", "spiffe://test/v", t0),
		newToken("expired", "spiffe://test/a", t0),
	} {
		must(t, s.CreateToken(ctx, tok))
	}
	wantErr(t, "CreateToken(duplicate)", s.CreateToken(ctx, newToken("fresh", "spiffe://test/b", later)), store.ErrExists)
	must(t, s.Enroll(ctx, hash("used"), t0, newCert("01", "spiffe://test/a", t0, time.Hour)))
	must(t, s.Enroll(ctx, hash("used-expires"), t0, newCert("02", "spiffe://test/a", t0, time.Hour)))
	if _, err := s.RevokeID(ctx, "spiffe://test/v", 1, t0); err != nil {
		t.Fatal(err)
	}

	tok, err := s.GetToken(ctx, hash("fresh"), t0)
	must(t, err)
	wantEqual(t, "token", tok, newToken("fresh", "spiffe://test/a", later))

	for _, tt := range []struct {
		name string
		text string
		now  time.Time
		want error
	}{
		{"unknown", "nope", t0, store.ErrNotFound},
		{"used", "used", t0, store.ErrTokenUsed},
		{"voided", "voided", t0, store.ErrTokenVoided},
		{"expired", "expired", t0, store.ErrTokenExpired},
		{"just before expiry", "fresh", later.Add(-time.Microsecond), nil},
		{"at expiry", "fresh", later, store.ErrTokenExpired},
		{"after expiry", "fresh", later.Add(time.Second), store.ErrTokenExpired},
		{"used before expired", "used-expires", later, store.ErrTokenUsed},
		{"voided before expired", "voided-expired", later, store.ErrTokenVoided},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantTokenErr(t, s, tt.text, tt.now, tt.want)
		})
	}
}

func testEnroll(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, s.CreateToken(ctx, newToken("tok", "spiffe://test/a", t0.Add(time.Hour))))
	c := newCert("0a", "spiffe://test/a", t0, time.Hour)
	must(t, s.Enroll(ctx, hash("tok"), t0, c))

	got, err := s.GetCertificate(ctx, "0a")
	must(t, err)
	wantEqual(t, "enrolled certificate", got, c)
	wantTokenErr(t, s, "tok", t0, store.ErrTokenUsed)

	again := newCert("0b", "spiffe://test/a", t0, time.Hour)
	wantErr(t, "Enroll(used token)", s.Enroll(ctx, hash("tok"), t0, again), store.ErrTokenUsed)
	_, err = s.GetCertificate(ctx, "0b")
	wantErr(t, "certificate of a failed enrollment", err, store.ErrNotFound)
}

func testEnrollFailure(t *testing.T, s store.Store) {
	ctx := t.Context()
	exp := t0.Add(time.Hour)
	for _, tok := range []store.Token{
		newToken("expiring", "spiffe://test/a", exp),
		newToken("voided", "spiffe://test/v", exp),
		newToken("for-a", "spiffe://test/a", exp),
		newToken("dup-serial", "spiffe://test/a", exp),
	} {
		must(t, s.CreateToken(ctx, tok))
	}
	if _, err := s.RevokeID(ctx, "spiffe://test/v", 1, t0); err != nil {
		t.Fatal(err)
	}
	existing := newCert("ee", "spiffe://test/other", t0, time.Hour)
	insert(t, s, existing)

	for _, tt := range []struct {
		name  string
		token string
		now   time.Time
		cert  store.Certificate
		want  error // nil: any error
	}{
		{"unknown token", "nope", t0, newCert("10", "spiffe://test/a", t0, time.Hour), store.ErrNotFound},
		{"expired token", "expiring", exp, newCert("11", "spiffe://test/a", t0, time.Hour), store.ErrTokenExpired},
		{"voided token", "voided", t0, newCert("12", "spiffe://test/v", t0, time.Hour), store.ErrTokenVoided},
		{"token for another ID", "for-a", t0, newCert("13", "spiffe://test/b", t0, time.Hour), nil},
		{"serial taken", "dup-serial", t0, newCert("ee", "spiffe://test/a", t0, time.Hour), store.ErrExists},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Enroll(ctx, hash(tt.token), tt.now, tt.cert)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Enroll: got error %v, want %v", err, tt.want)
			}
			got, err := s.GetCertificate(ctx, tt.cert.Serial)
			if tt.cert.Serial == existing.Serial {
				must(t, err)
				wantEqual(t, "existing certificate", got, existing)
			} else {
				wantErr(t, "certificate of a failed enrollment", err, store.ErrNotFound)
			}
		})
	}
	// The tokens of the failed enrollments can still be used.
	wantTokenErr(t, s, "expiring", t0, nil)
	wantTokenErr(t, s, "for-a", t0, nil)
	wantTokenErr(t, s, "dup-serial", t0, nil)
	must(t, s.Enroll(ctx, hash("for-a"), t0, newCert("14", "spiffe://test/a", t0, time.Hour)))
}

func testCertificates(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := newCert("1f", "spiffe://test/a", t0, 24*time.Hour)
	c.Renewal = true
	insert(t, s, c)
	got, err := s.GetCertificate(ctx, "1f")
	must(t, err)
	wantEqual(t, "certificate", got, c)
	if got.Revoked() {
		t.Fatal("new certificate is revoked")
	}

	other := newCert("1f", "spiffe://test/b", t0, time.Hour)
	wantErr(t, "InsertCertificate(duplicate)", s.InsertCertificate(ctx, other), store.ErrExists)
	got, err = s.GetCertificate(ctx, "1f")
	must(t, err)
	wantEqual(t, "certificate after a duplicate insert", got, c)

	_, err = s.GetCertificate(ctx, "2f")
	wantErr(t, "GetCertificate(unknown)", err, store.ErrNotFound)

	// A revoked certificate would bypass the revocation version.
	if err := s.InsertCertificate(ctx, revoked(newCert("3f", "spiffe://test/a", t0, time.Hour), 1, t0)); err == nil {
		t.Fatal("InsertCertificate accepted a revoked certificate")
	}
}

func testListCertificates(t *testing.T, s store.Store) {
	const a, b = "spiffe://test/a", "spiffe://test/b"
	insert(t, s,
		newCert("a1", a, t0, time.Hour),
		newCert("a2", a, t0.Add(time.Hour), time.Hour),
		newCert("a3", a, t0.Add(time.Hour), 2*time.Hour), // same NotBefore as a2: by serial
		newCert("b1", b, t0.Add(30*time.Minute), time.Hour),
	)
	for _, tt := range []struct {
		name   string
		filter store.CertFilter
		want   []string
	}{
		{"all, newest first", store.CertFilter{}, []string{"a3", "a2", "b1", "a1"}},
		{"by SPIFFE ID", store.CertFilter{SPIFFEID: a}, []string{"a3", "a2", "a1"}},
		{"unknown SPIFFE ID", store.CertFilter{SPIFFEID: "spiffe://test/c"}, []string{}},
		{"valid at", store.CertFilter{ValidAt: t0.Add(time.Hour)}, []string{"a3", "a2", "b1"}},
		{"valid later", store.CertFilter{ValidAt: t0.Add(2 * time.Hour)}, []string{"a3"}},
		{"limit", store.CertFilter{Limit: 2}, []string{"a3", "a2"}},
		{"all filters", store.CertFilter{SPIFFEID: b, ValidAt: t0, Limit: 1}, []string{"b1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := s.ListCertificates(t.Context(), tt.filter)
			must(t, err)
			wantEqual(t, "serials", serials(cs), tt.want)
		})
	}
	cs, err := s.ListCertificates(t.Context(), store.CertFilter{SPIFFEID: b})
	must(t, err)
	wantEqual(t, "listed certificate", cs, []store.Certificate{newCert("b1", b, t0.Add(30*time.Minute), time.Hour)})
}

func testCountExpiring(t *testing.T, s store.Store) {
	const id = "spiffe://test/a"
	insert(t, s,
		newCert("c1", id, t0, time.Hour),
		newCert("c2", id, t0, 2*time.Hour),
		newCert("c3", id, t0, 3*time.Hour),
		newCert("c4", id, t0, 2*time.Hour),
	)
	if _, err := s.RevokeSerial(t.Context(), "c4", 1, t0); err != nil {
		t.Fatal(err)
	}
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	for _, tt := range []struct {
		from, to time.Time
		want     int
	}{
		{h(0), h(2), 2}, // c1, c2; not the revoked c4
		{h(1), h(3), 2}, // from is exclusive, to inclusive
		{h(1), h(2), 1},
		{h(3), h(4), 0},
		{h(0), h(4), 3},
		{h(2), h(1), 0},
	} {
		t.Run(fmt.Sprintf("%v-%v", tt.from.Sub(t0), tt.to.Sub(t0)), func(t *testing.T) {
			n, err := s.CountExpiring(t.Context(), tt.from, tt.to)
			must(t, err)
			if n != tt.want {
				t.Fatalf("CountExpiring = %d, want %d", n, tt.want)
			}
		})
	}
}

func testRevokeSerial(t *testing.T, s store.Store) {
	ctx := t.Context()
	const a, b = "spiffe://test/a", "spiffe://test/b"
	a1, a2, b1 := newCert("a1", a, t0, time.Hour), newCert("a2", a, t0, time.Hour), newCert("b1", b, t0, time.Hour)
	insert(t, s, a1, a2, b1)
	exp := t0.Add(time.Hour)
	must(t, s.CreateToken(ctx, newToken("a-before", a, exp)))
	must(t, s.CreateToken(ctx, newToken("b", b, exp)))
	wantVersion(t, s, 0)

	at := t0.Add(10 * time.Minute)
	got, err := s.RevokeSerial(ctx, "a1", 1, at)
	must(t, err)
	wantEqual(t, "revoked certificate", got, revoked(a1, 1, at))
	stored, err := s.GetCertificate(ctx, "a1")
	must(t, err)
	wantEqual(t, "stored revoked certificate", stored, revoked(a1, 1, at))
	stored, err = s.GetCertificate(ctx, "a2")
	must(t, err)
	wantEqual(t, "other certificate of the ID", stored, a2)
	wantVersion(t, s, 1)

	wantTokenErr(t, s, "a-before", at, store.ErrTokenVoided)
	wantTokenErr(t, s, "b", at, nil)
	must(t, s.CreateToken(ctx, newToken("a-after", a, exp)))
	wantTokenErr(t, s, "a-after", at, nil)

	// Again: unchanged, no new version, and tokens made since stay usable.
	got, err = s.RevokeSerial(ctx, "a1", 4, at.Add(time.Minute))
	must(t, err)
	wantEqual(t, "certificate revoked again", got, revoked(a1, 1, at))
	wantVersion(t, s, 1)
	wantTokenErr(t, s, "a-after", at, nil)
	must(t, s.Enroll(ctx, hash("a-after"), at, newCert("a3", a, at, time.Hour)))

	_, err = s.RevokeSerial(ctx, "ff", 1, at)
	wantErr(t, "RevokeSerial(unknown)", err, store.ErrNotFound)
	wantVersion(t, s, 1)

	l, err := s.Revocations(ctx, at)
	must(t, err)
	wantEqual(t, "revocations", l, store.RevocationList{Version: 1, Entries: []store.Certificate{revoked(a1, 1, at)}})
}

func testRevokeID(t *testing.T, s store.Store) {
	ctx := t.Context()
	const a, b = "spiffe://test/a", "spiffe://test/b"
	at := t0
	expired := newCert("a0", a, t0.Add(-2*time.Hour), time.Hour)
	endsNow := newCert("a1", a, t0.Add(-time.Hour), time.Hour) // NotAfter == at: expired
	live1 := newCert("a2", a, t0.Add(-time.Minute), time.Hour)
	live2 := newCert("a3", a, t0, time.Hour)
	early := newCert("a4", a, t0.Add(-time.Minute), time.Hour)
	other := newCert("b1", b, t0, time.Hour)
	insert(t, s, expired, endsNow, live1, live2, early, other)
	_, err := s.RevokeSerial(ctx, "a4", 3, at.Add(-time.Second))
	must(t, err)
	must(t, s.CreateToken(ctx, newToken("a", a, t0.Add(time.Hour))))
	must(t, s.CreateToken(ctx, newToken("b", b, t0.Add(time.Hour))))
	wantVersion(t, s, 1)

	got, err := s.RevokeID(ctx, a, 1, at)
	must(t, err)
	wantEqual(t, "revoked, newest first", got, []store.Certificate{revoked(live2, 1, at), revoked(live1, 1, at)})
	wantVersion(t, s, 2)
	for _, want := range []store.Certificate{expired, endsNow, revoked(live1, 1, at), revoked(live2, 1, at), revoked(early, 3, at.Add(-time.Second)), other} {
		c, err := s.GetCertificate(ctx, want.Serial)
		must(t, err)
		wantEqual(t, "certificate "+want.Serial, c, want)
	}
	wantTokenErr(t, s, "a", at, store.ErrTokenVoided)
	wantTokenErr(t, s, "b", at, nil)

	// Nothing left to revoke: no new version.
	got, err = s.RevokeID(ctx, a, 1, at.Add(time.Second))
	must(t, err)
	wantCerts(t, "second RevokeID", got, nil)
	wantVersion(t, s, 2)

	// An ID without certificates still loses its tokens.
	must(t, s.CreateToken(ctx, newToken("c", "spiffe://test/c", t0.Add(time.Hour))))
	got, err = s.RevokeID(ctx, "spiffe://test/c", 1, at)
	must(t, err)
	wantCerts(t, "RevokeID of an ID without certificates", got, nil)
	wantVersion(t, s, 2)
	wantTokenErr(t, s, "c", at, store.ErrTokenVoided)
	must(t, s.CreateToken(ctx, newToken("c-after", "spiffe://test/c", t0.Add(time.Hour))))
	must(t, s.Enroll(ctx, hash("c-after"), at, newCert("c1", "spiffe://test/c", at, time.Hour)))
}

func testRevocations(t *testing.T, s store.Store) {
	ctx := t.Context()
	l, err := s.Revocations(ctx, t0)
	must(t, err)
	if l.Version != 0 || len(l.Entries) != 0 {
		t.Fatalf("new store has revocations %+v", l)
	}
	r1 := newCert("r1", "spiffe://test/a", t0, time.Hour)
	r2 := newCert("r2", "spiffe://test/b", t0, 2*time.Hour)
	insert(t, s, r1, r2, newCert("u1", "spiffe://test/a", t0, 3*time.Hour))
	at := t0.Add(time.Minute)
	for _, serial := range []string{"r1", "r2"} {
		_, err := s.RevokeSerial(ctx, serial, 1, at)
		must(t, err)
	}
	r1, r2 = revoked(r1, 1, at), revoked(r2, 1, at)
	for _, tt := range []struct {
		name string
		now  time.Time
		want []store.Certificate
	}{
		{"all unexpired", t0, []store.Certificate{r1, r2}},
		{"at r1's NotAfter", t0.Add(time.Hour), []store.Certificate{r2}},
		{"all expired", t0.Add(2 * time.Hour), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := s.Revocations(t.Context(), tt.now)
			must(t, err)
			if l.Version != 2 {
				t.Errorf("version %d, want 2", l.Version)
			}
			wantCerts(t, "entries", l.Entries, tt.want)
		})
	}
	wantVersion(t, s, 2)
}

func testMeta(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetMeta(ctx, "trust_domain")
	wantErr(t, "GetMeta(unset)", err, store.ErrNotFound)
	for _, kv := range [][2]string{{"trust_domain", "example.org"}, {"empty", ""}, {"trust_domain", "example.com"}} {
		must(t, s.SetMeta(ctx, kv[0], kv[1]))
	}
	for key, want := range map[string]string{"trust_domain": "example.com", "empty": ""} {
		v, err := s.GetMeta(ctx, key)
		must(t, err)
		if v != want {
			t.Errorf("GetMeta(%s) = %q, want %q", key, v, want)
		}
	}
}

const workers = 16

// parallel runs fn(i) for i in [0, n) at the same time and returns the errors.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range n {
		wg.Go(func() {
			start.Wait()
			errs[i] = fn(i)
		})
	}
	start.Done()
	wg.Wait()
	return errs
}

func testConcurrentEnrollSameToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	const id = "spiffe://test/a"
	must(t, s.CreateToken(ctx, newToken("tok", id, t0.Add(time.Hour))))
	errs := parallel(workers, func(i int) error {
		return s.Enroll(ctx, hash("tok"), t0, newCert(fmt.Sprintf("%02x", i), id, t0, time.Hour))
	})
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrTokenUsed):
			t.Errorf("Enroll: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d enrollments with one token succeeded, want 1", ok)
	}
	cs, err := s.ListCertificates(ctx, store.CertFilter{SPIFFEID: id})
	must(t, err)
	if len(cs) != 1 {
		t.Fatalf("%d certificates recorded, want 1", len(cs))
	}
}

func testConcurrentWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	errs := parallel(workers, func(i int) error {
		id := fmt.Sprintf("spiffe://test/w%d", i)
		text := fmt.Sprintf("token %d", i)
		if err := s.CreateToken(ctx, newToken(text, id, t0.Add(time.Hour))); err != nil {
			return err
		}
		if err := s.Enroll(ctx, hash(text), t0, newCert(fmt.Sprintf("e%02x", i), id, t0, time.Hour)); err != nil {
			return err
		}
		renewed := newCert(fmt.Sprintf("r%02x", i), id, t0.Add(time.Minute), time.Hour)
		renewed.Renewal = true
		if err := s.InsertCertificate(ctx, renewed); err != nil {
			return err
		}
		if _, err := s.ListCertificates(ctx, store.CertFilter{SPIFFEID: id}); err != nil {
			return err
		}
		return s.SetMeta(ctx, fmt.Sprintf("k%d", i), "v")
	})
	must(t, errors.Join(errs...))
	cs, err := s.ListCertificates(ctx, store.CertFilter{})
	must(t, err)
	if len(cs) != 2*workers {
		t.Fatalf("%d certificates, want %d", len(cs), 2*workers)
	}
	n, err := s.CountExpiring(ctx, t0, t0.Add(2*time.Hour))
	must(t, err)
	if n != 2*workers {
		t.Fatalf("CountExpiring = %d, want %d", n, 2*workers)
	}
}

func testConcurrentRevokes(t *testing.T, s store.Store) {
	ctx := t.Context()
	const multi = "spiffe://test/multi"
	for i := range workers {
		insert(t, s,
			newCert(fmt.Sprintf("s%02x", i), fmt.Sprintf("spiffe://test/s%d", i), t0, time.Hour),
			newCert(fmt.Sprintf("m%02x", i), multi, t0, time.Hour))
	}
	insert(t, s, newCert("x", "spiffe://test/x", t0, time.Hour))
	for i := range workers { // tokens to void, in the way of a deadlock
		must(t, s.CreateToken(ctx, newToken(fmt.Sprintf("m%d", i), multi, t0.Add(time.Hour))))
	}

	// Distinct serials: one version each.
	must(t, errors.Join(parallel(workers, func(i int) error {
		_, err := s.RevokeSerial(ctx, fmt.Sprintf("s%02x", i), 1, t0)
		return err
	})...))
	wantVersion(t, s, workers)

	// One serial: one version, and all callers see the same revocation.
	got := make([]store.Certificate, workers)
	must(t, errors.Join(parallel(workers, func(i int) error {
		var err error
		got[i], err = s.RevokeSerial(ctx, "x", i, t0.Add(time.Duration(i)*time.Second))
		return err
	})...))
	wantVersion(t, s, workers+1)
	for _, c := range got {
		wantEqual(t, "concurrently revoked certificate", c, got[0])
	}

	// One ID, revoked whole and by serial at once: each certificate is
	// revoked once, and there is no deadlock.
	var mu sync.Mutex
	byID := map[string]int{}
	must(t, errors.Join(parallel(workers, func(i int) error {
		if i%2 == 0 {
			_, err := s.RevokeSerial(ctx, fmt.Sprintf("m%02x", i), 1, t0)
			return err
		}
		cs, err := s.RevokeID(ctx, multi, 1, t0)
		mu.Lock()
		defer mu.Unlock()
		for _, c := range cs {
			byID[c.Serial]++
		}
		return err
	})...))
	// RevokeSerial got to the even ones RevokeID did not; the first RevokeID
	// revoked every odd one.
	bySerial := 0
	for i := range workers {
		serial := fmt.Sprintf("m%02x", i)
		switch n := byID[serial]; {
		case n > 1:
			t.Errorf("%s revoked by %d RevokeID calls", serial, n)
		case n == 0 && i%2 == 1:
			t.Errorf("%s not revoked by RevokeID", serial)
		case n == 0:
			bySerial++
		}
	}
	wantVersion(t, s, int64(workers+1+1+bySerial))
	for i := range workers {
		wantTokenErr(t, s, fmt.Sprintf("m%d", i), t0, store.ErrTokenVoided)
	}
	l, err := s.Revocations(ctx, t0)
	must(t, err)
	if len(l.Entries) != 2*workers+1 || l.Version != int64(workers+2+bySerial) {
		t.Fatalf("Revocations: %d entries, version %d; want %d, %d", len(l.Entries), l.Version, 2*workers+1, workers+2+bySerial)
	}
}

// testRevokeRacesEnroll revokes an ID while its tokens are being used:
// whatever enrolls with a token made before the revocation is revoked.
func testRevokeRacesEnroll(t *testing.T, s store.Store) {
	ctx := t.Context()
	const id, perWorker = "spiffe://test/racer", 8
	text := func(w, k int) string { return fmt.Sprintf("t%d-%d", w, k) }
	for w := range workers {
		for k := range perWorker {
			must(t, s.CreateToken(ctx, newToken(text(w, k), id, t0.Add(time.Hour))))
		}
	}
	var enrolled atomic.Int64
	midway := make(chan struct{})
	var revokedByID []store.Certificate
	errs := parallel(workers+1, func(w int) error {
		if w == workers {
			select {
			case <-midway:
			case <-time.After(10 * time.Second):
			}
			var err error
			revokedByID, err = s.RevokeID(ctx, id, 1, t0)
			return err
		}
		for k := range perWorker {
			err := s.Enroll(ctx, hash(text(w, k)), t0, newCert(fmt.Sprintf("%02x%02x", w, k), id, t0, time.Hour))
			switch {
			case err == nil:
				if enrolled.Add(1) == workers {
					close(midway)
				}
			case !errors.Is(err, store.ErrTokenVoided):
				return err
			}
		}
		return nil
	})
	must(t, errors.Join(errs...))
	cs, err := s.ListCertificates(ctx, store.CertFilter{SPIFFEID: id})
	must(t, err)
	for _, c := range cs {
		if !c.Revoked() {
			t.Errorf("certificate %s enrolled with a token made before RevokeID is not revoked", c.Serial)
		}
	}
	wantEqual(t, "revoked by RevokeID", serials(revokedByID), serials(cs))
	for w := range workers {
		for k := range perWorker {
			if _, err := s.GetToken(ctx, hash(text(w, k)), t0); err == nil {
				t.Errorf("token %s still usable", text(w, k))
			}
		}
	}
}

func testRenew(t *testing.T, s store.Store) {
	ctx := t.Context()
	const id = "spiffe://test/renewer"
	insert(t, s, newCert("a1", id, t0, time.Hour))
	next := newCert("a2", id, t0.Add(time.Minute), time.Hour)
	next.Renewal = true
	must(t, s.Renew(ctx, "a1", next))
	got, err := s.GetCertificate(ctx, "a2")
	must(t, err)
	wantEqual(t, "renewal recorded", got.Renewal, true)
	wantErr(t, "Renew(unknown previous)", s.Renew(ctx, "ff", newCert("a3", id, t0, time.Hour)), store.ErrNotFound)
	_, err = s.RevokeSerial(ctx, "a2", 1, t0)
	must(t, err)
	wantErr(t, "Renew(revoked previous)", s.Renew(ctx, "a2", newCert("a4", id, t0, time.Hour)), store.ErrRevoked)
	for _, serial := range []string{"a3", "a4"} {
		if _, err := s.GetCertificate(ctx, serial); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refused renewal recorded %s: %v", serial, err)
		}
	}
}

// testRevokeRacesRenew: renewals racing RevokeID of their identity are
// either refused or revoked with the rest.
func testRevokeRacesRenew(t *testing.T, s store.Store) {
	ctx := t.Context()
	const id, perWorker = "spiffe://test/renew-racer", 8
	for w := range workers {
		insert(t, s, newCert(fmt.Sprintf("p%02x", w), id, t0, time.Hour))
	}
	var renewed atomic.Int64
	midway := make(chan struct{})
	errs := parallel(workers+1, func(w int) error {
		if w == workers {
			select {
			case <-midway:
			case <-time.After(10 * time.Second):
			}
			_, err := s.RevokeID(ctx, id, 1, t0)
			return err
		}
		prev := fmt.Sprintf("p%02x", w)
		for k := range perWorker {
			next := newCert(fmt.Sprintf("q%02x%02x", w, k), id, t0, time.Hour)
			next.Renewal = true
			switch err := s.Renew(ctx, prev, next); {
			case err == nil:
				prev = next.Serial
				if renewed.Add(1) == workers {
					close(midway)
				}
			case errors.Is(err, store.ErrRevoked):
				return nil
			default:
				return err
			}
		}
		return nil
	})
	must(t, errors.Join(errs...))
	cs, err := s.ListCertificates(ctx, store.CertFilter{SPIFFEID: id})
	must(t, err)
	for _, c := range cs {
		if !c.Revoked() {
			t.Errorf("certificate %s renewed while RevokeID ran is not revoked", c.Serial)
		}
	}
}
