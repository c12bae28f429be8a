package control

import "testing"

func TestEdgeNameAllowed(t *testing.T) {
	patterns := []string{"*.Example.com", "api.shop.example.org", "127.0.0.1", "::1"}
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"api.example.com", true},
		{"API.EXAMPLE.COM", true},
		{"*.example.com", true}, // the wildcard itself: the same set of names
		{"example.com", false},
		{"a.b.example.com", false},
		{"evilexample.com", false},
		{"api.example.com.evil.org", false},
		{"api.shop.example.org", true},
		{"x.shop.example.org", false},
		{"*.shop.example.org", false},
		{"127.0.0.1", true},
		{"127.0.0.2", false},
		{"0:0:0:0:0:0:0:1", true},
		{"::ffff:127.0.0.1", true}, // the same address as 127.0.0.1
		{"localhost", false},
	} {
		if got := edgeNameAllowed(patterns, tt.name); got != tt.want {
			t.Errorf("edgeNameAllowed(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if edgeNameAllowed(nil, "localhost") {
		t.Error("no patterns allow a name")
	}
}
