package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/wardsec/ward/internal/atomicfile"
)

// RevocationsFile keeps the last revocation set a Source received, beside
// its SVID, so that a proxy restarted while the authority is unreachable
// still refuses the peers revoked before: without it a restart would
// forget every revocation until the feed answers again.
const RevocationsFile = "revocations.json"

// savedRevocations is RevocationsFile's format. The checksum makes a
// damaged file an error instead of a silently shorter list.
type savedRevocations struct {
	Version int64    `json:"version"`
	Serials []string `json:"serials"`
	SHA256  string   `json:"sha256"`
}

func revocationsSum(version int64, serials []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", version)
	for _, s := range serials {
		fmt.Fprintf(h, "%s\n", s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// saveRevocations writes r into dir, replacing the file atomically.
func saveRevocations(dir string, r *revocations) error {
	serials := make([]string, 0, len(r.serials))
	for s := range r.serials {
		serials = append(serials, s)
	}
	slices.Sort(serials)
	data, err := json.Marshal(savedRevocations{Version: r.version, Serials: serials, SHA256: revocationsSum(r.version, serials)})
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, RevocationsFile), data, 0o600)
}

// loadRevocations reads the set saved in dir: nil, nil when there is none
// yet. A file that does not parse or whose checksum does not match is an
// error, so that the proxy does not start believing nobody is revoked.
func loadRevocations(dir string) (*revocations, error) {
	path := filepath.Join(dir, RevocationsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s savedRevocations
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w (remove it to start without the saved revocations)", path, err)
	}
	if s.SHA256 != revocationsSum(s.Version, s.Serials) {
		return nil, fmt.Errorf("%s: checksum mismatch: the file is damaged (remove it to start without the saved revocations)", path)
	}
	return newRevocations(s.Version, s.Serials), nil
}
