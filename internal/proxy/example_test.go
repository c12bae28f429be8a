package proxy_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/wardsec/ward/internal/proxy"
)

// A guarded reverse proxy: the guard under the http.Server, ConnContext so
// that upgrades can switch the connection to pass-through, and chunked
// bodies read to their end before they are forwarded.
func ExampleGuard() {
	upstream, _ := url.Parse("http://127.0.0.1:9443")
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(upstream) },
		ModifyResponse: func(res *http.Response) error {
			if res.StatusCode == http.StatusSwitchingProtocols {
				// Before the 101 goes to the client: from now on the
				// connection carries WebSocket frames, not HTTP.
				proxy.UpgradeFromContext(res.Request.Context())
			}
			return nil
		},
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength < 0 { // chunked: its framing is checked as it is read
			body, err := io.ReadAll(r.Body)
			var fe *proxy.FramingError
			if errors.As(err, &fe) {
				http.Error(w, fe.Reason, fe.Status)
				return
			}
			if err != nil {
				return // the client went away
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		rp.ServeHTTP(w, r)
	})

	g := &proxy.Guard{
		Limits: proxy.Limits{HeaderTimeout: 10 * time.Second},
		Logger: slog.Default(),
		OnReject: func(c net.Conn, status int, reason string) {
			// audit and count the refusal
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	srv := &http.Server{
		Handler:           handler,
		ConnContext:       proxy.ConnContext,
		ReadHeaderTimeout: 15 * time.Second, // the guard's HeaderTimeout comes first
		IdleTimeout:       2 * time.Minute,
	}
	_ = srv.Serve(g.Listener(ln))
}
