package identity

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRevocationsSurviveRestart is the last-known-good rule for the trust
// feed: a source restarted from its directory while the authority is
// unreachable still refuses a peer revoked before the restart, and starts
// on the bundle the feed sent, not the one it enrolled with.
func TestRevocationsSurviveRestart(t *testing.T) {
	t.Parallel()
	ca := newFakeCA(t)
	dir := t.TempDir()
	id := svc("server")
	server := newSource(t, ca, id, func(c *Config) { c.Dir = dir })
	client := newSource(t, ca, svc("client"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx) }()

	sn := client.Current().Serial()
	ca.revoke(sn)
	eventually(t, time.Second, "the watcher to fetch the revocation", func() bool { return server.Revoked(sn) })
	next := ca.newIntermediate()
	ca.publish(next)
	ca.revoke() // a new feed version: the bundle changed
	hasNext := func(b *Bundle) bool {
		for _, c := range b.Intermediates {
			if c.Equal(next.cert) {
				return true
			}
		}
		return false
	}
	eventually(t, time.Second, "the feed to deliver the new intermediate", func() bool { return hasNext(server.Bundle()) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, RevocationsFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %04o, want 0600", path, perm)
	}

	// The restart: no authority at all, as when the server is down.
	restart := func() (*Source, error) {
		s, err := NewSource(Config{TrustDomain: td, Dir: dir, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return s, s.LoadOrEnroll(t.Context(), id, "")
	}
	again, err := restart()
	if err != nil {
		t.Fatal(err)
	}
	if !again.Revoked(sn) {
		t.Fatal("the restarted source forgot the revocation")
	}
	if !hasNext(again.Bundle()) {
		t.Error("the restarted source started on the enrollment's bundle, not the feed's")
	}
	r := connect(t, again.ServerTLSConfig(nil), client.ClientTLSConfig(AuthorizeID(id)))
	checkRefusal(t, r.serverErr, ReasonRevoked, "peer certificate serial "+sn+" (spiffe://example.org/svc/client) is revoked")
	if r.handled {
		t.Error("handler ran for a peer revoked before the restart")
	}

	// A damaged file stops the start instead of meaning "nobody is revoked".
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"edited serial": strings.Replace(string(good), sn, strings.Repeat("0", len(sn)), 1),
		"truncated":     string(good[:len(good)/2]),
		"not json":      "revoked: everyone\n",
	} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := restart()
		if err == nil || !strings.Contains(err.Error(), RevocationsFile) {
			t.Errorf("%s: restart error = %v, want one naming %s", name, err, RevocationsFile)
		}
	}
	if _, err := restart(); err == nil {
		t.Fatal("the damaged file was replaced or ignored")
	}
}
