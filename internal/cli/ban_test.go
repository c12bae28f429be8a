package cli

import (
	"regexp"
	"strings"
	"testing"
)

// TestBanCommands: add a ban by source, see it listed with its reason,
// extend it by banning the same caller again (same name), lift it;
// malformed flags are refused before anything reaches the server.
func TestBanCommands(t *testing.T) {
	_, dir := startServer(t)
	out, _, err := ward(t, "--data-dir", dir, "ban", "add", "--source", "203.0.113.7", "--ttl", "1h", "--reason", "credential stuffing")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^Ban/(ban-[0-9a-f]{12}) until 20`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "+Ban/"+m[1]) {
		t.Fatalf("ban add printed:\n%s", out)
	}
	name := m[1]
	out, _, err = ward(t, "--data-dir", dir, "ban", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, name) || !strings.Contains(out, "source 203.0.113.7") || !strings.Contains(out, "credential stuffing") || !strings.Contains(out, "59m") {
		t.Fatalf("ban list:\n%s", out)
	}
	out, _, err = ward(t, "--data-dir", dir, "ban", "add", "--source", "203.0.113.7", "--ttl", "2h", "--reason", "again")
	if err != nil || !strings.Contains(out, "~Ban/"+name) {
		t.Fatalf("banning again: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"--source", "203.0.113.999", "--ttl", "1h", "--reason", "x"},
		{"--source", "203.0.113.7", "--reason", "x"},
		{"--source", "203.0.113.7", "--ttl", "1h"},
		{"--source", "203.0.113.7", "--api-key", "abcdefgh", "--ttl", "1h", "--reason", "x"},
		{"--user", "corp", "--ttl", "1h", "--reason", "x"},
	} {
		if _, _, err := ward(t, append([]string{"--data-dir", dir, "ban", "add"}, args...)...); err == nil {
			t.Errorf("ban add %v accepted", args)
		}
	}
	out, _, err = ward(t, "--data-dir", dir, "ban", "remove", name)
	if err != nil || !strings.Contains(out, "-Ban/"+name) {
		t.Fatalf("ban remove: %v\n%s", err, out)
	}
	out, _, _ = ward(t, "--data-dir", dir, "ban", "list")
	if strings.Contains(out, name) {
		t.Fatalf("lifted ban still listed:\n%s", out)
	}
	if _, _, err := ward(t, "--data-dir", dir, "ban", "remove", name); err == nil {
		t.Fatal("removing a missing ban succeeded")
	}
}
