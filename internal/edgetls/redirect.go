package edgetls

import (
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// HSTSValue is the Strict-Transport-Security header the edge sends: two
// years (the preload list's expectation), subdomains included. Once a
// browser has seen it, it never speaks plain HTTP to the host or any of its
// subdomains again until max-age runs out: every subdomain must serve HTTPS
// before the edge is exposed under a parent domain.
const HSTSValue = "max-age=63072000; includeSubDomains"

// HSTS adds the Strict-Transport-Security header to every response next
// writes over TLS. Browsers ignore the header on plain HTTP (RFC 6797
// section 8.1), so it is not sent there; the plain listener redirects.
func HSTS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", HSTSValue)
		}
		next.ServeHTTP(w, r)
	})
}

// RedirectHandler is the whole of the edge's plain-HTTP listener: every
// request gets a 308 Permanent Redirect to the same host over HTTPS, on the
// port of httpsAddr (omitted when 443), keeping the path and query. 308
// keeps the method and body, so a misdirected POST is not turned into a
// GET. The edge redirects only to names it serves: a request whose Host is
// not a DNS name or IP address that the certificate certs serves right now
// covers gets 400, so the edge is never an open redirector to whatever
// name a client sent, nor writes an attacker's text into a Location
// header. Nothing else is served; wrap it with ACMESource.HTTPHandler to
// answer http-01 challenges.
//
// httpsAddr is the HTTPS listen address (":443", "0.0.0.0:8443"); an
// address without a port number panics: validate flags first.
func RedirectHandler(httpsAddr string, certs CertSource) http.Handler {
	_, port, err := net.SplitHostPort(httpsAddr)
	if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n == 0 {
		panic("edgetls: RedirectHandler: HTTPS address " + strconv.Quote(httpsAddr) + " has no valid port")
	}
	if port == "443" {
		port = ""
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, ok := redirectHost(r.Host)
		if !ok || !serves(certs, host) {
			http.Error(w, "bad Host header", http.StatusBadRequest)
			return
		}
		if port != "" {
			host = net.JoinHostPort(strings.Trim(host, "[]"), port)
		}
		path := r.URL.EscapedPath()
		if !strings.HasPrefix(path, "/") {
			path = "/" + path // "*" of OPTIONS, or an empty path
		}
		target := "https://" + host + path
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", target)
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// serves reports whether the certificate certs serves for host (a
// redirectHost result) covers it.
func serves(certs CertSource, host string) bool {
	name := strings.Trim(host, "[]")
	c, err := certs.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	if err != nil || c == nil || c.Leaf == nil {
		return false
	}
	return c.Leaf.VerifyHostname(name) == nil
}

// redirectHost returns the host part of a Host header, lowercased and
// without port, with IPv6 literals in brackets, if it is a DNS name or an
// IP address.
func redirectHost(hostport string) (string, bool) {
	host := hostport
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return "", false
		}
		host = h
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() == nil {
			return "[" + ip.String() + "]", true
		}
		return ip.String(), true
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if !validDNSName(host) {
		return "", false
	}
	return host, true
}

// validDNSName reports whether name is a hostname of letters, digits and
// hyphens, in labels of 1 to 63 characters, 253 at most in all, with no
// label starting or ending with a hyphen.
func validDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
