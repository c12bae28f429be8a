// Command idp is a minimal OpenID provider for bench/gateway/run.sh: it
// serves OIDC discovery and a JWKS with one ES256 key on a loopback port and
// prints one long-lived token signed with that key. It is a benchmark tool,
// not a product binary.
//
// Usage: idp -listen 127.0.0.1:0 -aud ward-bench -sub bench-user
//
// Standard output, then it serves until killed:
//
//	issuer http://127.0.0.1:PORT
//	token eyJ...
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve discovery and JWKS on")
	aud := flag.String("aud", "ward-bench", "audience of the token (the Issuer resource's audiences)")
	sub := flag.String("sub", "bench-user", "subject of the token")
	ttl := flag.Duration("ttl", 24*time.Hour, "lifetime of the token")
	flag.Parse()
	if err := run(*listen, *aud, *sub, *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "idp:", err)
		os.Exit(1)
	}
}

func run(listen, aud, sub string, ttl time.Duration) error {
	host, _, err := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q must be a loopback host:port", listen)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	issuer := "http://" + ln.Addr().String()
	const kid = "bench-1"
	b64 := base64.RawURLEncoding.EncodeToString
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		return err
	}
	raw := pub.Bytes() // 0x04 || X || Y
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
		"x": b64(raw[1:33]), "y": b64(raw[33:65]),
	}}})
	discovery, _ := json.Marshal(map[string]string{"issuer": issuer, "jwks_uri": issuer + "/jwks"})

	now := time.Now()
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": kid})
	claims, _ := json.Marshal(map[string]any{
		"iss": issuer, "sub": sub, "aud": aud, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
		"scope": "bench",
	})
	signing := b64(header) + "." + b64(claims)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return err
	}
	sig := make([]byte, 64) // JWS ES256: r || s, 32 bytes each
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	fmt.Printf("issuer %s\ntoken %s.%s\n", issuer, signing, b64(sig))

	mux := http.NewServeMux()
	serve := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}
	}
	mux.Handle("GET /.well-known/openid-configuration", serve(discovery))
	mux.Handle("GET /jwks", serve(jwks))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return srv.Serve(ln)
}
