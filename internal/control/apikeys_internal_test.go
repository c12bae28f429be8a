package control

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/store"
)

// collidingStore refuses the first collisions prefixes as taken.
type collidingStore struct {
	store.Store // nil: only CreateAPIKey is called
	collisions  int
	tried       []string
}

func (s *collidingStore) CreateAPIKey(_ context.Context, rec authn.APIKeyRecord, _ string) error {
	s.tried = append(s.tried, rec.Prefix)
	if len(s.tried) <= s.collisions {
		return store.ErrExists
	}
	return nil
}

// TestCreateAPIKeyRetriesPrefixCollision: a taken prefix makes the server
// create another key, and the caller gets the one that was stored.
func TestCreateAPIKeyRetriesPrefixCollision(t *testing.T) {
	admin := spiffeid.RequireFromString("spiffe://example.org/user/admin")
	for _, tt := range []struct {
		collisions int
		status     int
	}{{0, 200}, {1, 200}, {createAttempts - 1, 200}, {createAttempts, 500}} {
		st := &collidingStore{collisions: tt.collisions}
		h := &Handler{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Events: &audit.Recorder{}}
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, PathAPIKeys, strings.NewReader(`{"app":"billing","routes":["*"]}`))
		h.createAPIKey(w, r, admin)
		if w.Code != tt.status {
			t.Fatalf("%d collisions: status %d, want %d: %s", tt.collisions, w.Code, tt.status, w.Body)
		}
		if want := min(tt.collisions+1, createAttempts); len(st.tried) != want {
			t.Fatalf("%d collisions: %d attempts, want %d", tt.collisions, len(st.tried), want)
		}
		if tt.status != 200 {
			continue
		}
		var out APIKeyCreated
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if last := st.tried[len(st.tried)-1]; out.Prefix != last || !strings.HasPrefix(out.Key, "wak_"+last+"_") {
			t.Fatalf("answered key %s, stored prefix %s", out.Prefix, last)
		}
	}
}
