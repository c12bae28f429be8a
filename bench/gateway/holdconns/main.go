// Command holdconns opens many idle HTTP/2 connections over TLS to one
// loopback proxy and holds them open, for bench/gateway/run.sh to read the
// proxy's memory with that many clients connected. It is a benchmark tool,
// not a product binary.
//
// Each connection completes a TLS handshake (ALPN h2) and one GET, which
// must answer 200, then stays idle. Connections are spread over -sources
// loopback addresses (127.0.0.2, 127.0.0.3, ...), so that a per-source
// connection-rate limit (Ward's gateway allows a burst of 200 per address)
// does not turn them away. When all are open it prints "open N" and holds
// them for -hold (or until killed).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "", "https URL of the proxy (loopback)")
	n := flag.Int("n", 1000, "connections to open")
	sources := flag.Int("sources", 10, "loopback source addresses to spread them over")
	parallel := flag.Int("parallel", 32, "handshakes in flight at once")
	hold := flag.Duration("hold", 30*time.Second, "how long to hold them once open")
	headers := http.Header{}
	flag.Func("H", "a request header, \"Name: value\" (repeatable)", func(v string) error {
		name, value, ok := strings.Cut(v, ":")
		if !ok {
			return errors.New("want Name: value")
		}
		headers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		return nil
	})
	flag.Parse()
	if err := run(*url, headers, *n, *sources, *parallel, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "holdconns:", err)
		os.Exit(1)
	}
}

func run(url string, headers http.Header, n, sources, parallel int, hold time.Duration) error {
	if url == "" || n < 1 || sources < 1 || sources > 250 || parallel < 1 {
		return errors.New("need -url, -n >= 1, 1 <= -sources <= 250, -parallel >= 1")
	}
	var (
		wg     sync.WaitGroup
		sem    = make(chan struct{}, parallel)
		failed atomic.Int64
		first  atomic.Value
		trs    = make([]*http.Transport, n)
	)
	start := time.Now()
	for i := range n {
		src := netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i%sources)})
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 10 * time.Second}
		tr := &http.Transport{
			DialContext:         d.DialContext,
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // a benchmark's self-signed certificate, on loopback
			ForceAttemptHTTP2:   true,
			MaxConnsPerHost:     1,
			IdleConnTimeout:     0,
			TLSHandshakeTimeout: 10 * time.Second,
		}
		trs[i] = tr
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := get(tr, url, headers); err != nil {
				failed.Add(1)
				first.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d connections failed, first: %v", f, n, first.Load())
	}
	fmt.Printf("open %d in %v\n", n, time.Since(start).Round(time.Millisecond))
	time.Sleep(hold)
	for _, tr := range trs {
		tr.CloseIdleConnections()
	}
	return nil
}

func get(tr *http.Transport, url string, headers http.Header) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header = headers.Clone()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		return fmt.Errorf("%s %d", resp.Proto, resp.StatusCode)
	}
	return nil
}
