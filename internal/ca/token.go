package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// tokenPrefix marks a Ward join token (and its format version), so a token
// pasted in the wrong place is recognisable and secret scanners can find it.
const tokenPrefix = "wjt1_"

const tokenSecretLen = 32

var errMalformedToken = errors.New("malformed join token")

// newToken returns a fresh join token and the hash the store keeps.
func newToken() (string, [32]byte, error) {
	secret := make([]byte, tokenSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return "", [32]byte{}, err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret)
	return tok, sha256.Sum256([]byte(tok)), nil
}

// ParseToken checks a join token's shape and returns the hash under which
// the store keeps it. It never echoes the token in its error.
func ParseToken(tok string) ([32]byte, error) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok || len(rest) != base64.RawURLEncoding.EncodedLen(tokenSecretLen) {
		return [32]byte{}, errMalformedToken
	}
	secret, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil || len(secret) != tokenSecretLen {
		return [32]byte{}, errMalformedToken
	}
	return sha256.Sum256([]byte(tok)), nil
}
