package edgetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
)

// CertSource provides the edge's server certificate. GetCertificate is
// called on every handshake and must not block; Run keeps the certificate
// current (watching files, renewing) until ctx ends, and returns
// ctx.Err() then.
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	Run(ctx context.Context) error
}

// alpnSource is a CertSource that needs extra ALPN protocols offered, the
// way ACME's tls-alpn-01 challenge needs "acme-tls/1" (RFC 8737).
type alpnSource interface {
	extraNextProtos() []string
}

// edgeCipherSuites are the only TLS 1.2 suites the edge accepts: ECDHE
// (forward secrecy) with an AEAD cipher. No CBC (Lucky13, padding
// oracles), no RSA key exchange (no forward secrecy, ROBOT), no 3DES or
// RC4. TLS 1.3 suites are not configurable in Go and are all AEAD.
var edgeCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// edgeCurves are the key exchanges offered, in order of preference:
// the hybrid post-quantum X25519MLKEM768 (TLS 1.3 clients that offer it
// are protected against "record now, decrypt later"), then X25519 and the
// NIST curves P-256 and P-384 that every client supports. P-521 and
// finite-field groups are left out: nothing needs them and they are slow.
var edgeCurves = []tls.CurveID{
	tls.X25519MLKEM768,
	tls.X25519,
	tls.CurveP256,
	tls.CurveP384,
}

// ServerConfig returns the tls.Config for the edge's public listener.
//
//   - TLS 1.2 is the minimum: TLS 1.0 and 1.1 are deprecated (RFC 8996)
//     and only allow weak suites. TLS 1.3 is offered and preferred.
//   - In TLS 1.2 only ECDHE suites with AES-GCM or ChaCha20-Poly1305 are
//     accepted (see edgeCipherSuites): forward secrecy and AEAD, the edge
//     half of Ward's invariant "edge TLS 1.2+ with AEAD ciphers only".
//   - Key exchange groups: X25519MLKEM768, X25519, P-256, P-384.
//   - ALPN: h2 then http/1.1; "acme-tls/1" is added when the source is an
//     ACMESource, so that the tls-alpn-01 challenge can reach it (net/http
//     closes such connections after the handshake: no request is served).
//   - The certificate comes from certs on every handshake, so a reload or
//     a renewal applies to the next handshake without a restart.
//   - With clientCAs, clients may present a certificate
//     (VerifyClientCertIfGiven): one that does not chain to clientCAs fails
//     the handshake, none at all is fine. Routes that authenticate users by
//     certificate check r.TLS.PeerCertificates themselves; the others
//     ignore it. Without clientCAs no certificate is requested.
//   - Session tickets stay on (Go rotates their keys every day): resumption
//     saves a full handshake for returning clients, and Go keeps the
//     verified client chain in the ticket.
func ServerConfig(certs CertSource, clientCAs *x509.CertPool) *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if a, ok := certs.(alpnSource); ok {
		protos = append(protos, a.extraNextProtos()...)
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     append([]uint16(nil), edgeCipherSuites...),
		CurvePreferences: append([]tls.CurveID(nil), edgeCurves...),
		NextProtos:       protos,
		GetCertificate:   certs.GetCertificate,
	}
	if clientCAs != nil {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = clientCAs
	}
	return cfg
}
