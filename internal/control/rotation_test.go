package control_test

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
)

// TestRotationUnderLiveMTLS runs the real server and two workloads that
// call each other over mutual TLS without pause while their SVIDs rotate
// every couple of seconds and the CA introduces a new intermediate and
// retires the old one. Not one request may fail.
func TestRotationUnderLiveMTLS(t *testing.T) {
	const ttl = 4 * time.Second
	ts := startServer(t, func(c *control.ServerConfig) {
		c.SVIDTTL = ttl
		c.PublishDelay = 1500 * time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	orders, catalog := ts.source(t, "orders"), ts.source(t, "catalog")
	var wg sync.WaitGroup
	for _, s := range []*identity.Source{orders, catalog} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
	}
	defer func() { cancel(); wg.Wait() }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		TLSConfig: orders.ServerTLSConfig(identity.AuthorizeID(catalog.Current().ID)),
		ErrorLog:  slog.NewLogLogger(countingHandler{&refused}, slog.LevelError),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()

	url := "https://" + ln.Addr().String() + "/"
	clientTLS := func() *tls.Config { return catalog.ClientTLSConfig(identity.AuthorizeID(orders.Current().ID)) }
	keepAlive := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(), ForceAttemptHTTP2: true}}
	fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(), DisableKeepAlives: true}}
	defer keepAlive.CloseIdleConnections()

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var load sync.WaitGroup
	for _, c := range []*http.Client{keepAlive, keepAlive, fresh} {
		load.Add(1)
		go func() {
			defer load.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	serials := map[string]bool{}
	issuers := map[string]bool{}
	observe := func() {
		for _, s := range []*identity.Source{orders, catalog} {
			serials[s.Current().Serial()] = true
			issuers[hex.EncodeToString(s.Current().Chain[1].SubjectKeyId)] = true
		}
	}
	observe()
	oldInter := hex.EncodeToString(orders.Current().Chain[1].SubjectKeyId)
	tick := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			observe()
		}
	}
	tick(2 * time.Second)
	next, err := ts.operator.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Wait until both workloads hold SVIDs of the new intermediate and every
	// SVID of the old one has expired, then retire it.
	tick(ttl + 3*time.Second)
	for _, s := range []*identity.Source{orders, catalog} {
		if got := hex.EncodeToString(s.Current().Chain[1].SubjectKeyId); got != next.ID {
			t.Fatalf("%s still holds an SVID of intermediate %s", s.Current().ID, got)
		}
	}
	// The server replaced its own certificate and the bootstrap credential
	// (revoking the superseded one) from the new intermediate too.
	ts.reloadOperator(t)
	if err := ts.operator.Retire(context.Background(), oldInter, false); err != nil {
		t.Fatal(err)
	}
	tick(3 * time.Second)
	close(stop)
	load.Wait()

	t.Logf("requests ok=%d failed=%d, serials seen=%d, intermediates seen=%d", ok.Load(), failed.Load(), len(serials), len(issuers))
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during rotation; first: %v", failed.Load(), firstErr.Load())
	}
	if refused.Load() != 0 {
		t.Fatalf("%d handshakes refused during rotation", refused.Load())
	}
	if len(serials) < 6 || len(issuers) != 2 || ok.Load() < 100 {
		t.Fatalf("rotation did not happen as planned: %d serials, %d intermediates, %d requests", len(serials), len(issuers), ok.Load())
	}
}

// countingHandler counts the http.Server error lines that report a refused handshake.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "handshake error") {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }
