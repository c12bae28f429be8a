package pipeline

import (
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
)

// Request ids are 24 hex digits: 14 chosen at random when the process
// starts and a 40-bit counter. Replicas and restarts of a role never share
// a prefix (in practice: 56 random bits), so ids stay unique across
// processes, and taking one costs an atomic add rather than a system call
// for random bytes per request. Ids are not secrets: they only join
// records.
var (
	idPrefix  [14]byte
	idCounter atomic.Uint64
)

func init() {
	var b [7]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("pipeline: no randomness for request ids: " + err.Error())
	}
	hex.Encode(idPrefix[:], b[:])
}

// NewRequestID returns a request id unique to this process's lifetime and,
// with overwhelming probability, across processes.
func NewRequestID() string {
	n := idCounter.Add(1)
	var b [24]byte
	copy(b[:], idPrefix[:])
	const digits = "0123456789abcdef"
	for i := 23; i >= 14; i-- {
		b[i] = digits[n&0xf]
		n >>= 4
	}
	return string(b[:])
}

// ValidRequestID accepts what NewRequestID makes and what a caller may
// reasonably pass on: 1 to 64 letters, digits and '-'.
func ValidRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
