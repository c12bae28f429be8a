package authn

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

type failingStore struct{}

func (failingStore) Get(context.Context, string) (APIKeyRecord, error) {
	return APIKeyRecord{}, errors.New("database is down")
}

func TestAPIKeyAuthenticate(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	store := NewMemoryAPIKeyStore()
	mk := func(scopes []string, expires time.Time) (string, APIKeyRecord) {
		t.Helper()
		pt, rec, err := NewAPIKey("billing", scopes, expires)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(rec); err != nil {
			t.Fatal(err)
		}
		return pt, rec
	}
	valid, validRec := mk([]string{"public-orders", "invoices"}, now.Add(time.Hour))
	forever, _ := mk([]string{APIKeyScopeAll}, time.Time{})
	revoked, revokedRec := mk([]string{"public-orders"}, now.Add(time.Hour))
	if err := store.Revoke(revokedRec.Prefix); err != nil {
		t.Fatal(err)
	}
	expiring, _ := mk([]string{"public-orders"}, now.Add(time.Minute))
	unknown, _, err := NewAPIKey("billing", []string{"public-orders"}, time.Time{}) // never stored
	if err != nil {
		t.Fatal(err)
	}
	// Right prefix, another secret: flip one character of the secret.
	last := valid[len(valid)-2]
	flip := byte('A')
	if last == 'A' {
		flip = 'B'
	}
	wrongSecret := valid[:len(valid)-2] + string(flip) + valid[len(valid)-1:]

	keys := NewAPIKeys(store)
	tests := []struct {
		name   string
		key    string
		route  string
		at     time.Time
		reason string
	}{
		{"valid", valid, "public-orders", now, ""},
		{"valid second scope", valid, "invoices", now, ""},
		{"wildcard scope, no expiry", forever, "anything", now.Add(100 * 365 * 24 * time.Hour), ""},
		{"unknown prefix", unknown, "public-orders", now, ReasonAPIKeyUnknown},
		{"right prefix wrong secret", wrongSecret, "public-orders", now, ReasonAPIKeyUnknown},
		{"revoked", revoked, "public-orders", now, ReasonAPIKeyRevoked},
		{"expired", expiring, "public-orders", now.Add(time.Minute), ReasonAPIKeyExpired},
		{"out of scope", valid, "admin", now, ReasonAPIKeyOutOfScope},
		{"empty route", valid, "", now, ReasonAPIKeyOutOfScope},
		{"malformed: empty", "", "public-orders", now, ReasonAPIKeyMalformed},
		{"malformed: bearer", "Bearer " + valid, "public-orders", now, ReasonAPIKeyMalformed},
		{"malformed: upper case", strings.ToUpper(valid), "public-orders", now, ReasonAPIKeyMalformed},
		{"malformed: trailing newline", valid + "\n", "public-orders", now, ReasonAPIKeyMalformed},
		{"malformed: truncated", valid[:len(valid)-1], "public-orders", now, ReasonAPIKeyMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := keys.Authenticate(ctx, tc.key, tc.route, tc.at)
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if p.AppID != "billing" || p.KeyPrefix == "" || len(p.KeyScopes) == 0 {
					t.Fatalf("principal %+v", p)
				}
				return
			}
			assertReason(t, err, tc.reason, tc.key)
			if len(tc.key) > 13 && strings.Contains(err.Error(), tc.key[13:]) {
				t.Fatalf("error echoes the secret: %v", err)
			}
			if p.AppID != "" {
				t.Fatalf("principal set on failure: %+v", p)
			}
		})
	}
	if p, _ := keys.Authenticate(ctx, valid, "public-orders", now); p.KeyPrefix != validRec.Prefix {
		t.Fatalf("prefix %q, want %q", p.KeyPrefix, validRec.Prefix)
	}

	_, err = NewAPIKeys(failingStore{}).Authenticate(ctx, valid, "public-orders", now)
	assertReason(t, err, ReasonAPIKeyUnavailable, valid)
}

func TestNewAPIKey(t *testing.T) {
	pt, rec, err := NewAPIKey("app-1", []string{"r"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := ParseAPIKey(pt)
	if err != nil {
		t.Fatalf("own key does not parse: %v", err)
	}
	if prefix != rec.Prefix || !strings.HasPrefix(pt, "wak_"+prefix+"_") || len(pt) != 56 {
		t.Fatalf("shape: %q / %+v", pt, rec)
	}
	if strings.Contains(string(rec.Hash[:]), pt) || rec.Hash == [32]byte{} {
		t.Fatal("record holds no hash or the key itself")
	}
	pt2, rec2, err := NewAPIKey("app-1", []string{"r"}, time.Time{})
	if err != nil || pt2 == pt || rec2.Prefix == rec.Prefix {
		t.Fatal("keys are not random")
	}
	if !LooksLikeAPIKey(pt) || LooksLikeAPIKey("eyJhbGciOi") {
		t.Fatal("LooksLikeAPIKey")
	}

	store := NewMemoryAPIKeyStore()
	if err := store.Add(rec); err != nil {
		t.Fatal(err)
	}
	if err := store.Add(rec); err == nil {
		t.Fatal("duplicate prefix accepted")
	}
	if err := store.Revoke("zzzzzzzz"); !errors.Is(err, ErrAPIKeyNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}

	for _, tc := range []struct {
		name    string
		id      string
		scopes  []string
		expires time.Time
	}{
		{"no id", "", []string{"r"}, time.Time{}},
		{"id with space", "my app", []string{"r"}, time.Time{}},
		{"no scopes", "app", nil, time.Time{}},
		{"empty scope", "app", []string{""}, time.Time{}},
		{"expired already", "app", []string{"r"}, time.Now().Add(-time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := NewAPIKey(tc.id, tc.scopes, tc.expires); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestParseAPIKey(t *testing.T) {
	const good = "wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	if p, err := ParseAPIKey(good); err != nil || p != "abcdefgh" {
		t.Fatalf("good: %q %v", p, err)
	}
	bad := map[string]string{
		"empty":                 "",
		"wrong tag":             "wak-abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"upper tag":             "WAK_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"prefix upper":          "wak_ABCDEFGH_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"prefix not base32":     "wak_abcdefg1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"prefix short":          "wak_abcdefg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"separator":             "wak_abcdefgh-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"secret std base64":     "wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
		"secret non-canonical":  "wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
		"secret padded":         "wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"too long":              good + "A",
		"too short":             good[:55],
		"whitespace":            " " + good[1:],
		"NUL":                   good[:20] + "\x00" + good[21:],
		"non-ASCII same length": "wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\u00e9"[:56],
	}
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := ParseAPIKey(s)
			assertReason(t, err, ReasonAPIKeyMalformed, s)
		})
	}
}
