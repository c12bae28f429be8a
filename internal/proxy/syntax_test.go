package proxy

import "testing"

func TestValidValue(t *testing.T) {
	// Every byte value at every position of a 20-byte value, against the
	// table.
	base := []byte("abcdefghijklmnopqrst")
	for pos := range base {
		for c := range 256 {
			v := append([]byte(nil), base...)
			v[pos] = byte(c)
			if got, want := validValue(v), valueChar[c]; got != want {
				t.Fatalf("byte %#x at %d: got %v, want %v", c, pos, got, want)
			}
		}
	}
	if !validValue([]byte("\tcaf\xc3\xa9 \x80\xff~ \t")) {
		t.Error("rejected tabs and obs-text")
	}
}

func TestValidAuthority(t *testing.T) {
	for _, tc := range []struct {
		in          string
		port, valid bool
	}{
		{"a", false, true}, {"a.example:80", false, true}, {"a.example:80", true, true},
		{"a.example", true, false}, {"[::1]", false, true}, {"[::1]:443", true, true},
		{"[::ffff:1.2.3.4]", false, true}, {"[1.2.3.4]", false, false}, {"[fe80::1%25eth0]", false, false},
		{"[::1", false, false}, {"[]", false, false}, {"a:", false, false}, {"a:65536", false, false},
		{"a:0", false, true}, {"a:1234567", false, false}, {"u@a", false, false}, {"a b", false, false},
		{"", false, false}, {":80", false, false}, {"a:b:c", false, false}, {"a%20b", false, false},
	} {
		if got := validAuthority([]byte(tc.in), tc.port); got != tc.valid {
			t.Errorf("validAuthority(%q, %v) = %v", tc.in, tc.port, got)
		}
	}
}
