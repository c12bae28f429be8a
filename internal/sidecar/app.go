package sidecar

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/wardsec/ward/internal/proxy"
)

// appForwarder sends authorized requests to the app on loopback: HTTP/1.1
// by default, prior-knowledge HTTP/2 for gRPC (what gRPC servers speak in
// plaintext). Connection pools are bounded.
type appForwarder struct {
	h1, h2c *httputil.ReverseProxy
}

func newAppForwarder(addr string, lim Limits) *appForwarder {
	target := &url.URL{Scheme: "http", Host: addr}
	dialer := &net.Dialer{Timeout: lim.ConnectTimeout, KeepAlive: 30 * time.Second}
	h1 := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConnsPerHost:   256,
		MaxConnsPerHost:       lim.MaxConnsPerApp,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: lim.RequestTimeout,
		DisableCompression:    true,
	}
	h2c := &http.Transport{
		DialContext:        dialer.DialContext,
		MaxConnsPerHost:    lim.MaxConnsPerApp,
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
		Protocols:          onlyH2C(),
	}
	mk := func(t http.RoundTripper) *httputil.ReverseProxy {
		return &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Host = pr.In.Host // the app sees the name it was called by
				// Rewrite runs after the hop-by-hop headers were removed:
				// a Connection header naming Ward's headers took them out
				// of pr.Out. Ward's headers always reach the app.
				proxy.RestoreWard(pr.Out.Header, pr.In.Header)
			},
			Transport:  t,
			BufferPool: proxy.Buffers, // streams (gRPC, events) are flushed at once by ReverseProxy itself
			// After 101 the inbound connection carries raw bytes both ways:
			// the request guard steps aside.
			ModifyResponse: func(resp *http.Response) error {
				if resp.StatusCode == http.StatusSwitchingProtocols {
					proxy.UpgradeFromContext(resp.Request.Context())
				}
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
				http.Error(w, "upstream app unavailable", http.StatusBadGateway)
			},
		}
	}
	return &appForwarder{h1: mk(h1), h2c: mk(h2c)}
}

func onlyH2C() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}

func (a *appForwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if proxy.IsGRPC(r) {
		a.h2c.ServeHTTP(w, r)
		return
	}
	a.h1.ServeHTTP(w, r)
}
