package sidecar

import (
	"net"
	"net/http"
	"strings"

	"github.com/wardsec/ward/internal/proxy"
)

// outboundHandler is the app's side: with fixed empty, the app names the
// service as the request's host (HTTP_PROXY style, http://orders/path);
// otherwise every request goes to the fixed service.
func (s *Sidecar) outboundHandler(fixed string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			http.Error(w, "ward: CONNECT is not supported; call http://<service>/ and let the sidecar encrypt", http.StatusMethodNotAllowed)
			return
		}
		name := fixed
		if name == "" {
			host := r.URL.Host
			if host == "" {
				host = r.Host
			}
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			name = strings.ToLower(host)
		}
		u, err := s.mesh.Upstream(name)
		if err != nil {
			http.Error(w, "ward: "+err.Error(), http.StatusBadGateway)
			return
		}
		// Ward's headers are Ward's to set: what the app sends (such as the
		// identity token it received, forwarded as is) does not travel on;
		// the next sidecar would refuse a token its sender did not sign.
		proxy.StripWard(r.Header)
		u.ServeHTTP(w, r)
	})
}
