// Package dashboard is the browser side of `ward server`: login by a
// short-lived one-time link (from `ward dashboard login`), sessions in a
// Secure, HttpOnly, SameSite=Strict cookie, a CSRF token on every request
// that changes something, a strict Content-Security-Policy, and the
// embedded pages (plain HTML, CSS and JS, no inline script).
//
// The dashboard decides nothing itself: its JSON routes (under
// /ui/api/) are served by the control plane with the operator of the
// session, through the same role checks as the admin API. Browser routes
// and the admin API are separate muxes; the admin API never accepts the
// cookie, the browser routes never accept a client certificate.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Limits and lifetimes.
const (
	// LinkTTL is how long a login link can be used (once).
	LinkTTL = 5 * time.Minute
	// SessionTTL is how long a session lasts after login.
	SessionTTL = 8 * time.Hour
	// maxPending bounds the unused links and the sessions held in memory.
	maxPending = 10000
	// CookieName is the session cookie: __Host- makes browsers insist on
	// Secure, Path=/ and no Domain.
	CookieName = "__Host-ward-session"
	// HeaderCSRF carries the session's CSRF token on state-changing
	// requests.
	HeaderCSRF = "X-Ward-CSRF"
	// PathLogin is where a login link points: /ui/login?token=...
	PathLogin = "/ui/login"
)

// CSP is the Content-Security-Policy of every browser response: scripts,
// styles and data from the server's own origin only, nothing inline, no
// framing, no plugin, no base or form target elsewhere.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

//go:embed static
var static embed.FS

// Auth keeps login links and sessions, in memory: a link works on the
// server that printed it, and a restart logs every browser out.
type Auth struct {
	// OnLogin, if set, learns of every use of a login link (operator is
	// empty when the link was not valid), for the audit log. Set it
	// before Handler serves.
	OnLogin func(ctx context.Context, operator, source string, ok bool)

	mu       sync.Mutex
	links    map[[32]byte]link
	sessions map[[32]byte]*Session
	now      func() time.Time
}

type link struct {
	operator string
	expires  time.Time
}

// Session is a logged-in browser.
type Session struct {
	Operator string
	CSRF     string
	Expires  time.Time
}

// NewAuth returns an empty Auth.
func NewAuth() *Auth {
	return &Auth{links: map[[32]byte]link{}, sessions: map[[32]byte]*Session{}, now: time.Now}
}

func newToken() (string, [32]byte) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	return tok, sha256.Sum256([]byte(tok))
}

// ErrFull means too many links or sessions are pending.
var ErrFull = errors.New("too many pending dashboard logins")

// NewLink returns a one-time login token for operator, valid LinkTTL.
// Only its hash is kept.
func (a *Auth) NewLink(operator string) (string, time.Time, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire()
	if len(a.links) >= maxPending {
		return "", time.Time{}, ErrFull
	}
	tok, h := newToken()
	exp := a.now().Add(LinkTTL)
	a.links[h] = link{operator: operator, expires: exp}
	return tok, exp, nil
}

// LoginURL is the link to print for token on the server at base
// (https://host:port).
func LoginURL(base, token string) string {
	return base + PathLogin + "?token=" + url.QueryEscape(token)
}

// expire drops expired links and sessions; a.mu is held.
func (a *Auth) expire() {
	now := a.now()
	for h, l := range a.links {
		if now.After(l.expires) {
			delete(a.links, h)
		}
	}
	for h, s := range a.sessions {
		if now.After(s.Expires) {
			delete(a.sessions, h)
		}
	}
}

// login trades a link's token for a new session and its cookie value.
func (a *Auth) login(token string) (string, *Session, bool) {
	h := sha256.Sum256([]byte(token))
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.links[h]
	delete(a.links, h) // one use, also when expired
	if !ok || a.now().After(l.expires) {
		return "", nil, false
	}
	a.expire()
	if len(a.sessions) >= maxPending {
		return "", nil, false
	}
	cookie, ch := newToken()
	csrf, _ := newToken()
	s := &Session{Operator: l.operator, CSRF: csrf, Expires: a.now().Add(SessionTTL)}
	a.sessions[ch] = s
	return cookie, s, true
}

// session returns the session of r's cookie.
func (a *Auth) session(r *http.Request) (*Session, [32]byte, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil, [32]byte{}, false
	}
	h := sha256.Sum256([]byte(c.Value))
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[h]
	if !ok || a.now().After(s.Expires) {
		delete(a.sessions, h)
		return nil, h, false
	}
	return s, h, true
}

type ctxKey struct{}

// Operator returns the operator of the session a dashboard request runs
// for (set by Handler before the API sees it).
func Operator(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(ctxKey{}).(string)
	return s, ok && s != ""
}

// Handler serves the browser routes under /ui/: the pages, login, logout,
// the session, and api (the JSON routes under /ui/api/, given the
// session's operator in the request's context) for logged-in browsers
// only, with the CSRF token checked on every request but GET and HEAD.
func (a *Auth) Handler(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", files))
	mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		page := "index.html"
		if _, _, ok := a.session(r); !ok {
			page = "login.html"
		}
		http.ServeFileFS(w, r, sub, page)
	})
	mux.HandleFunc("GET "+PathLogin, func(w http.ResponseWriter, r *http.Request) {
		cookie, s, ok := a.login(r.URL.Query().Get("token"))
		if a.OnLogin != nil {
			op := ""
			if ok {
				op = s.Operator
			}
			a.OnLogin(r.Context(), op, r.RemoteAddr, ok)
		}
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			http.ServeFileFS(w, r, sub, "badlink.html")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: cookie, Path: "/", Secure: true, HttpOnly: true,
			SameSite: http.SameSiteStrictMode, MaxAge: int(SessionTTL / time.Second)})
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /ui/api/session", func(w http.ResponseWriter, r *http.Request) {
		s, _, ok := a.session(r)
		if !ok {
			writeError(w, http.StatusUnauthorized, "no_session", "log in with a link from `ward dashboard login`")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"operator": s.Operator, "csrf": s.CSRF, "expires": s.Expires})
	})
	mux.HandleFunc("POST /ui/api/logout", a.guard(func(w http.ResponseWriter, r *http.Request, _ *Session, h [32]byte) {
		a.mu.Lock()
		delete(a.sessions, h)
		a.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
		writeJSON(w, http.StatusOK, map[string]string{"status": "logged out"})
	}))
	mux.Handle("/ui/api/", a.guard(func(w http.ResponseWriter, r *http.Request, s *Session, _ [32]byte) {
		api.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s.Operator)))
	}))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such page")
	})
	return secure(mux)
}

// guard admits requests of a live session; those that may change
// something (any method but GET and HEAD) must also carry the session's
// CSRF token and come from the same origin.
func (a *Auth) guard(next func(http.ResponseWriter, *http.Request, *Session, [32]byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, h, ok := a.session(r)
		if !ok {
			writeError(w, http.StatusUnauthorized, "no_session", "log in with a link from `ward dashboard login`")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			tok := r.Header.Get(HeaderCSRF)
			if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) != 1 {
				writeError(w, http.StatusForbidden, "csrf", "missing or wrong CSRF token")
				return
			}
			if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
				writeError(w, http.StatusForbidden, "csrf", "cross-site request")
				return
			}
			if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
				writeError(w, http.StatusForbidden, "csrf", "cross-origin request")
				return
			}
		}
		next(w, r, s, h)
	}
}

// secure sets the headers of every browser response.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		h.Set("Strict-Transport-Security", "max-age=63072000")
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"code": code, "message": msg})
}
