// Package edgetls is the public TLS of Ward's edge gateway: the server
// tls.Config the gateway listens with (TLS 1.2+ with AEAD suites only),
// the sources of its certificate (a PEM pair on disk reloaded when it
// changes, a certificate renewed from Ward's own CA, or one obtained and
// renewed by ACME with the tls-alpn-01 or http-01 challenge), and the plain
// HTTP side of the edge (a redirect to HTTPS) with HSTS.
//
// A certificate source is a CertSource: the gateway passes it to
// ServerConfig and runs it beside its listeners (Run blocks, watching or
// renewing, until its context ends). Sources swap whole certificates behind
// an atomic pointer, so handshakes never wait for a reload or a renewal,
// and a bad new certificate never replaces a good one.
package edgetls
