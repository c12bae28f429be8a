package identity

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"testing"
	"time"
)

// TestCACertificateIsNotAnSVID: a CA certificate that carries a SPIFFE ID
// and chains to the bundle is still not a workload's identity, so a
// stolen or mis-issued intermediate cannot be presented as one.
func TestCACertificateIsNotAnSVID(t *testing.T) {
	ca := newFakeCA(t)
	server := newSource(t, ca, svc("server"))
	key := newKey(t)
	tmpl := caTemplate("looks like a workload")
	tmpl.URIs = []*url.URL{svc("client").URL()}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.KeyUsage |= x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.active.cert, key.Public(), ca.active.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der, ca.active.cert.Raw}, PrivateKey: key, Leaf: leaf}
	r := connect(t, server.ServerTLSConfig(nil), staticClient(cert, ca.bundle()))
	if r.handled {
		t.Fatal("the server accepted a CA certificate as a client SVID")
	}
	checkRefusal(t, r.serverErr, ReasonUntrusted, "CA certificate, not an SVID")
}

// TestMeshServerRefusesTLS12Client: mesh TLS is 1.3 only; a client that
// offers at most TLS 1.2, with a valid SVID, gets no connection.
func TestMeshServerRefusesTLS12Client(t *testing.T) {
	ca := newFakeCA(t)
	server := newSource(t, ca, svc("server"))
	now := time.Now()
	client := staticClient(ca.tlsCert(ca.active, svc("client"), now.Add(-time.Minute), now.Add(time.Hour)), ca.bundle())
	client.MinVersion, client.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	r := connect(t, server.ServerTLSConfig(nil), client)
	if r.handled || r.serverErr == nil || r.clientErr == nil {
		t.Fatalf("a TLS 1.2 client was served: %+v", r)
	}
	checkRefusal(t, r.serverErr, "", "unsupported versions")
}
