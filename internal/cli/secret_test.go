package cli

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestSecretValueOnArgvRefused: a value given on the command line is
// refused with a hint, before anything is sent anywhere.
func TestSecretValueOnArgvRefused(t *testing.T) {
	for _, args := range [][]string{
		{"secret", "put", "orders/db/password", "hunter2"},
		{"secret", "put", "orders/db/password=hunter2"},
		{"secret", "put", "orders/db/password", "--value", "hunter2"},
		{"secret", "rotate", "orders/db/password", "hunter2"},
		{"run", "--service", "orders", "--server", "https://127.0.0.1:1", "--bundle", "b.pem", "--secret", "DB=hunter2 x", "--", "true"},
	} {
		var out, errw bytes.Buffer
		root := NewRoot(&out, &errw)
		root.SetArgs(append(args, "--data-dir", t.TempDir()))
		root.SetIn(strings.NewReader(""))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "command line") {
			t.Errorf("ward %s: %v, want a refusal that says values never come from the command line", strings.Join(args, " "), err)
		}
		if strings.Contains(out.String(), "hunter2") || strings.Contains(errw.String(), "hunter2") {
			t.Errorf("ward %s printed the value", strings.Join(args, " "))
		}
	}
}

// TestReadKEKSaysWhatIsWrong: a key-encryption key for unseal or
// rotate-kek is checked before the server sees it, and the error names
// where it came from.
func TestReadKEKSaysWhatIsWrong(t *testing.T) {
	dir := t.TempDir()
	good := base64.StdEncoding.EncodeToString(make([]byte, 32))
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, stdin, file, want string
	}{
		{"empty stdin", "", "", "no key-encryption key in standard input"},
		{"junk on stdin", "not a key\n", "", "standard input: "},
		{"empty file", "", write("empty", "\n", 0o600), "no key-encryption key in " + filepath.Join(dir, "empty")},
		{"open file", "", write("open", good, 0o644), "readable by group or others"},
		{"short key in a file", "", write("short", "c2hvcnQ=", 0o600), filepath.Join(dir, "short") + ": "},
	} {
		cmd := &cobra.Command{}
		cmd.SetIn(strings.NewReader(tc.stdin))
		if _, err := readKEK(cmd, tc.file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	cmd := &cobra.Command{}
	cmd.SetIn(strings.NewReader(good + "\n"))
	if got, err := readKEK(cmd, ""); err != nil || got != good {
		t.Fatalf("a good key: %q, %v", got, err)
	}
}
