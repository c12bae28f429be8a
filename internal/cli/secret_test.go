package cli

import (
	"bytes"
	"strings"
	"testing"
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
