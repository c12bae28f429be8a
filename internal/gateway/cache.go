package gateway

import (
	"context"
	"crypto/sha256"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/idtoken"
)

// Cache bounds. A full cache is emptied of expired entries, and if that
// is not enough, entirely: the caches save CPU, they never decide.
const (
	maxTokenCache = 16 << 10
	maxJWTCache   = 64 << 10
	// jwtCacheFor bounds how long a verified bearer token is reused without
	// checking its signature again, so that a key an issuer withdraws stops
	// being honoured within this time.
	jwtCacheFor = time.Minute
)

// tokenCache reuses the identity token of one caller towards one service
// while it has at least half its life left: signing costs an ECDSA
// signature, and the token names only the caller, not the request.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedToken
}

type cachedToken struct {
	tok     string
	renewAt time.Time
	expires time.Time
}

func (c *tokenCache) get(svid *identity.SVID, p *authn.Principal, audience string, ttl time.Duration) (string, error) {
	now := time.Now()
	key := strings.Join([]string{svid.Serial(), audience, p.AppID, p.Issuer, p.User, p.AnonymousID, strings.Join(p.Scopes, " ")}, "\x00")
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Before(e.renewAt) {
		return e.tok, nil
	}
	claims := idtoken.Claims{Audience: audience, Subject: p.User, UserIssuer: p.Issuer, App: p.AppID, Scopes: p.Scopes}
	if p.User == "" {
		claims.Anonymous = p.AnonymousID
	}
	tok, err := idtoken.Sign(svid, claims, now, ttl)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxTokenCache {
		c.sweepLocked(now, true)
	}
	c.m[key] = cachedToken{tok: tok, renewAt: now.Add(ttl / 2), expires: now.Add(ttl)}
	c.mu.Unlock()
	return tok, nil
}

func (c *tokenCache) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now, false)
}

func (c *tokenCache) sweepLocked(now time.Time, full bool) {
	if c.m == nil {
		c.m = map[string]cachedToken{}
		return
	}
	for k, e := range c.m {
		if !now.Before(e.renewAt) {
			delete(c.m, k)
		}
	}
	if full && len(c.m) >= maxTokenCache {
		clear(c.m)
	}
}

// jwtCache remembers bearer tokens that verified, by their SHA-256, for
// at most jwtCacheFor and never past their own expiry. Only successes are
// cached: a failure is checked again each time, so it costs an attacker
// as much as it costs Ward.
type jwtCache struct {
	mu sync.Mutex
	v  *authn.Verifier // the verifier the entries came from
	m  map[[32]byte]cachedJWT
}

type cachedJWT struct {
	p       authn.Principal
	issuers []string
	until   time.Time
}

func (c *jwtCache) verify(ctx context.Context, v *authn.Verifier, tok string, issuers []string) (authn.Principal, error) {
	key := sha256.Sum256([]byte(tok))
	now := time.Now()
	c.mu.Lock()
	if c.v != v { // new Issuer resources: forget what the old ones vouched for
		c.v, c.m = v, nil
	}
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Before(e.until) && slices.Equal(e.issuers, issuers) {
		return e.p, nil
	}
	p, err := v.Verify(ctx, tok, issuers...)
	if err != nil {
		return p, err
	}
	until := now.Add(jwtCacheFor)
	if exp, ok := p.Claims["exp"].(float64); ok && time.Unix(int64(exp), 0).Before(until) {
		until = time.Unix(int64(exp), 0)
	}
	c.mu.Lock()
	if c.v == v {
		if c.m == nil || len(c.m) >= maxJWTCache {
			c.sweepLocked(now, true)
		}
		c.m[key] = cachedJWT{p: p, issuers: issuers, until: until}
	}
	c.mu.Unlock()
	return p, nil
}

func (c *jwtCache) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now, false)
}

func (c *jwtCache) sweepLocked(now time.Time, full bool) {
	if c.m == nil {
		c.m = map[[32]byte]cachedJWT{}
		return
	}
	for k, e := range c.m {
		if !now.Before(e.until) {
			delete(c.m, k)
		}
	}
	if full && len(c.m) >= maxJWTCache {
		clear(c.m)
	}
}
