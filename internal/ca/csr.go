package ca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxCSRSize bounds what the CA parses; a P-256 CSR is about 300 bytes and
// an RSA-4096 one under 2 KiB.
const MaxCSRSize = 8 << 10

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// CSRError says why a CSR was refused; its text is safe to show the client.
type CSRError struct{ Msg string }

func (e *CSRError) Error() string { return "certificate request refused: " + e.Msg }

func csrErr(format string, a ...any) error { return &CSRError{Msg: fmt.Sprintf(format, a...)} }

// ParseCSR parses and checks a DER certificate request from a workload:
// valid self-signature, an acceptable key (ECDSA P-256/P-384, RSA 2048 to
// 8192 bits, Ed25519), no CA request, and no subject alternative name other
// than at most one URI. The subject is ignored: the CA sets its own.
// When want is non-zero, a URI SAN present must equal it.
func ParseCSR(der []byte, want spiffeid.ID) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, csrErr("empty")
	}
	if len(der) > MaxCSRSize {
		return nil, csrErr("larger than %d bytes", MaxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, csrErr("not a valid PKCS#10 request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, csrErr("bad signature: %v", err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	for _, ext := range csr.Extensions {
		switch {
		case ext.Id.Equal(oidBasicConstraints):
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			if rest, err := asn1.Unmarshal(ext.Value, &bc); err != nil || len(rest) != 0 {
				return nil, csrErr("malformed basic constraints extension")
			}
			if bc.IsCA {
				return nil, csrErr("requests a CA certificate")
			}
		case ext.Id.Equal(oidSubjectAltName):
			if err := checkSANs(ext.Value); err != nil {
				return nil, err
			}
		}
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) > 0 {
		return nil, csrErr("only a SPIFFE ID URI may be requested as subject alternative name")
	}
	if len(csr.URIs) > 1 {
		return nil, csrErr("requests %d URI SANs, an SVID has exactly one", len(csr.URIs))
	}
	if len(csr.URIs) == 1 {
		got, err := spiffeid.FromURI(csr.URIs[0])
		if err != nil {
			return nil, csrErr("URI SAN is not a SPIFFE ID: %v", err)
		}
		if !want.IsZero() && got != want {
			return nil, csrErr("requests %s but the credential is for %s", got, want)
		}
	}
	return csr, nil
}

// checkSANs refuses every GeneralName but a URI: the standard library skips
// kinds it does not know (otherName, directoryName, ...), so count them here.
func checkSANs(der []byte) error {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil || len(rest) != 0 || !seq.IsCompound || seq.Tag != asn1.TagSequence {
		return csrErr("malformed subject alternative name extension")
	}
	for b := seq.Bytes; len(b) > 0; {
		var gn asn1.RawValue
		if b, err = asn1.Unmarshal(b, &gn); err != nil {
			return csrErr("malformed subject alternative name extension")
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 6 {
			return csrErr("only a SPIFFE ID URI may be requested as subject alternative name")
		}
	}
	return nil
}

func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return csrErr("unsupported elliptic curve %s (use P-256 or P-384)", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return csrErr("RSA key of %d bits (need 2048 to 8192)", n)
		}
	case ed25519.PublicKey:
	default:
		return csrErr("unsupported key type %T", pub)
	}
	return nil
}
