package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLinksAndSessionsExpire: a link works once and only within LinkTTL;
// a session ends after SessionTTL; neither is kept in the clear.
func TestLinksAndSessionsExpire(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAuth()
	a.now = func() time.Time { return now }
	h := a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op, _ := Operator(r.Context())
		_, _ = w.Write([]byte("api as " + op))
	}))
	get := func(path, cookie string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "https://ward.test"+path, nil)
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	late, _, err := a.NewLink("admin")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(LinkTTL + time.Second)
	if w := get(PathLogin+"?token="+late, ""); w.Code != http.StatusUnauthorized {
		t.Errorf("an expired link: %d", w.Code)
	}

	tok, _, err := a.NewLink("admin")
	if err != nil {
		t.Fatal(err)
	}
	for h := range a.links {
		if strings.Contains(string(h[:]), tok) {
			t.Error("a link's token is kept in the clear")
		}
	}
	w := get(PathLogin+"?token="+tok, "")
	if w.Code != http.StatusSeeOther {
		t.Fatalf("login: %d", w.Code)
	}
	cookie := w.Result().Cookies()[0].Value
	if w := get("/ui/api/graph", cookie); w.Code != http.StatusOK || w.Body.String() != "api as admin" {
		t.Errorf("the API with a session: %d %q", w.Code, w.Body)
	}
	if w := get(PathLogin+"?token="+tok, ""); w.Code != http.StatusUnauthorized {
		t.Errorf("a link used twice: %d", w.Code)
	}
	now = now.Add(SessionTTL + time.Second)
	if w := get("/ui/api/graph", cookie); w.Code != http.StatusUnauthorized {
		t.Errorf("the API after the session ended: %d", w.Code)
	}
	if len(a.sessions) != 0 {
		t.Errorf("%d sessions kept after they ended", len(a.sessions))
	}
}
