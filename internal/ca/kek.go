package ca

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KEKEnv names the environment variable that may hold the key-encryption
// key, base64 (standard or URL alphabet) of 32 random bytes.
const KEKEnv = "WARD_KEK"

const sealVersion = 1

// ErrWrongKEK is Open's error for a key that does not open what was
// sealed: the wrong key-encryption key, or tampered data (AES-GCM cannot
// tell the two apart).
var ErrWrongKEK = errors.New("wrong key-encryption key or tampered data")

// KEK is the key-encryption key that seals CA private keys at rest with
// AES-256-GCM. Its ID is stored in each sealed blob so a wrong key is
// reported as such rather than as corrupt data.
type KEK struct {
	aead cipher.AEAD
}

// NewKEK wraps 32 bytes of key material.
func NewKEK(key []byte) (*KEK, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("key-encryption key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &KEK{aead: aead}, nil
}

// ParseKEK decodes a base64 key as written in a KEK file or WARD_KEK.
func ParseKEK(text string) (*KEK, error) {
	text = strings.TrimSpace(text)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(text); err == nil {
			return NewKEK(key)
		}
	}
	return nil, errors.New("key-encryption key is not base64")
}

// LoadKEK finds the key-encryption key: the file when one is named, else
// $WARD_KEK, else defaultFile, which is created (mode 0600) with a fresh
// random key when it does not exist yet. It returns where the key came from.
func LoadKEK(file, defaultFile string) (*KEK, string, error) {
	if file != "" {
		return readKEKFile(file)
	}
	if v, ok := os.LookupEnv(KEKEnv); ok {
		k, err := ParseKEK(v)
		if err != nil {
			return nil, "", fmt.Errorf("$%s: %w", KEKEnv, err)
		}
		return k, "$" + KEKEnv, nil
	}
	if _, err := os.Stat(defaultFile); errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, "", err
		}
		if err := writeFileExcl(defaultFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n")); err != nil {
			return nil, "", fmt.Errorf("create key-encryption key: %w", err)
		}
	}
	return readKEKFile(defaultFile)
}

func readKEKFile(path string) (*KEK, string, error) {
	text, err := ReadKEKText(path)
	if err != nil {
		return nil, "", err
	}
	k, err := ParseKEK(text)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return k, path, nil
}

// ReadKEKText reads the text of a key-encryption key file (base64 of 32
// bytes), refusing a file group or others may read.
func ReadKEKText(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("key-encryption key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("key-encryption key %s is readable by group or others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("key-encryption key: %w", err)
	}
	defer clear(data)
	return string(data), nil
}

// Seal encrypts plaintext; aad binds the blob to its purpose (e.g. the authority ID).
func (k *KEK) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte{sealVersion}, nonce...)
	return k.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts what Seal produced with the same aad.
func (k *KEK) Open(sealed, aad []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < 1+ns+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("sealed key is malformed")
	}
	pt, err := k.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	if err != nil {
		return nil, fmt.Errorf("cannot decrypt CA key: %w", ErrWrongKEK)
	}
	return pt, nil
}

// writeFileExcl creates path with mode 0600; it fails if path exists.
func writeFileExcl(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
