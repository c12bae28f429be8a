package store

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSQLiteNotADatabase(t *testing.T) {
	random := make([]byte, 8192)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(random)
	for _, tt := range []struct {
		name    string
		content []byte
	}{
		{"random bytes", random},
		{"text", []byte(strings.Repeat("trust_domain = \"example.org\"\n", 200))},
		{"SQLite header, then garbage", append([]byte("SQLite format 3\x00"), random...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ward.db")
			if err := os.WriteFile(path, tt.content, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := OpenSQLite(t.Context(), path)
			if err == nil {
				s.Close()
				t.Fatal("opened a file that is not a database")
			}
			if want := "store " + path + " is not a valid SQLite database: "; !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %q does not start with %q", err, want)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.content) {
				t.Fatal("open changed the file")
			}
		})
	}
}

func TestSQLiteOpenError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "ward.db")
	_, err := OpenSQLite(t.Context(), path)
	if err == nil || !strings.HasPrefix(err.Error(), "open store "+path+": ") {
		t.Fatalf("got error %v, want one about opening %s", err, path)
	}
}

func TestSQLitePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#y%20", "ward.db")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetMeta(t.Context(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("database not at %s: %v", path, err)
	}
}
