package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// checkpointStatement is what a checkpoint signature covers: the seq of
// the last record, the hash of the entry before the checkpoint, its time,
// whether it seals its segment, and a retention cut if it records one.
func checkpointStatement(e *entry) []byte {
	s := fmt.Sprintf("ward-audit-checkpoint/v1\nseq=%d\nhash=%s\ntime=%s\nseal=%t\n",
		e.Seq, e.Prev, e.Time.UTC().Format(time.RFC3339Nano), e.Seal)
	if e.Cut != nil {
		s += fmt.Sprintf("cut=%d:%d:%s\n", e.Cut.Seg, e.Cut.Seq, e.Cut.Prev)
	}
	return []byte(s)
}

// signCheckpoint signs e's statement with s (ECDSA or Ed25519).
func signCheckpoint(s crypto.Signer, e *entry) ([]byte, error) {
	msg := checkpointStatement(e)
	if _, ok := s.Public().(ed25519.PublicKey); ok {
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	d := sha256.Sum256(msg)
	return s.Sign(rand.Reader, d[:], crypto.SHA256)
}

// verifyCheckpoint checks e's signature against pub.
func verifyCheckpoint(pub crypto.PublicKey, e *entry) error {
	if len(e.Sig) == 0 {
		return errors.New("checkpoint is not signed")
	}
	msg := checkpointStatement(e)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(k, d[:], e.Sig) {
			return errors.New("checkpoint signature does not verify with the given key")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, msg, e.Sig) {
			return errors.New("checkpoint signature does not verify with the given key")
		}
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
	return nil
}

// ParsePublicKeyPEM reads the key that verifies checkpoints: a PEM
// "PUBLIC KEY" (PKIX) or a "CERTIFICATE" whose key is used.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PUBLIC KEY or CERTIFICATE PEM block found")
		}
		switch b.Type {
		case "PUBLIC KEY":
			return x509.ParsePKIXPublicKey(b.Bytes)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, err
			}
			return c.PublicKey, nil
		}
	}
}
