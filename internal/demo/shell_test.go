package demo

import "testing"

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/ward-demo-123": "/tmp/ward-demo-123",
		"/home/me/my demo":   "'/home/me/my demo'",
		"/it's":              `'/it'\''s'`,
		"":                   "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
