package authn

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestVerifierStopLeavesOthersConnections: issue 13, lifecycle. A
// verifier built without an HTTP client owns its connections: when its
// refresh loop ends it closes those, not the idle connections of the
// process's shared http.DefaultTransport.
func TestVerifierStopLeavesOthersConnections(t *testing.T) {
	var conns atomic.Int64
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	other.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	other.Start()
	defer other.Close()
	dt := http.DefaultTransport.(*http.Transport)
	defer dt.CloseIdleConnections()
	fetch := func() {
		resp, err := http.Get(other.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fetch() // leaves an idle keep-alive connection in DefaultTransport

	rk, _ := testKeys(t)
	p := newIDP(t, pubJWK(rk, "rsa1", ""))
	v, err := NewVerifier([]Issuer{{Name: "corp", IssuerURL: p.URL, Audiences: []string{testAudience}}}, WithInsecureLoopbackHTTP())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	waitFor(t, "the first key fetch", func() bool { return p.Count("/jwks") >= 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	fetch()
	if n := conns.Load(); n != 1 {
		t.Errorf("the end of a verifier's loop closed another's keep-alive connection: %d connections, want 1", n)
	}
}

// TestRefresherRunsTheCurrentVerifiersLoop: issue 13, lifecycle. A
// Refresher refreshes the keys of the verifier it was last given, one loop
// at a time: the replaced verifier's loop has ended before the new one
// starts, and Run returns only once its loop has.
func TestRefresherRunsTheCurrentVerifiersLoop(t *testing.T) {
	rk, _ := testKeys(t)
	p1, p2 := newIDP(t, pubJWK(rk, "rsa1", "")), newIDP(t, pubJWK(rk, "rsa1", ""))
	fast := WithRefresh(10*time.Millisecond, time.Hour)
	v1, v2 := newTestVerifier(t, p1, nil, fast), newTestVerifier(t, p2, nil, fast)

	var r Refresher
	r.Set(v1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, "v1's loop", func() bool { return p1.Count("/jwks") >= 2 })

	r.Set(v2)
	waitFor(t, "v2's loop", func() bool { return p2.Count("/jwks") >= 1 })
	old, cur := p1.Count("/jwks"), p2.Count("/jwks")
	waitFor(t, "v2's loop to go on", func() bool { return p2.Count("/jwks") >= cur+3 })
	if n := p1.Count("/jwks"); n != old {
		t.Errorf("the replaced verifier's loop went on: %d fetches after v2's loop started, want %d", n, old)
	}

	r.Set(nil) // no issuers any more: no loop
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	after := p2.Count("/jwks")
	r.Set(v1) // after Run: nothing starts
	if p1.Count("/jwks") != old || p2.Count("/jwks") != after {
		t.Error("a loop ran after Run returned")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
