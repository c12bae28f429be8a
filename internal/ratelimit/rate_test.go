package ratelimit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in       string
		want     Rate
		interval time.Duration
		str      string
	}{
		{"100/s", Rate{100, time.Second}, 10 * time.Millisecond, "100/s"},
		{"10/m", Rate{10, time.Minute}, 6 * time.Second, "10/m"},
		{"5000/h", Rate{5000, time.Hour}, 720 * time.Millisecond, "5000/h"},
		{"1/d", Rate{1, 24 * time.Hour}, 24 * time.Hour, "1/d"},
		{"20/10s", Rate{20, 10 * time.Second}, 500 * time.Millisecond, "20/10s"},
		{"1/500ms", Rate{1, 500 * time.Millisecond}, 500 * time.Millisecond, "1/500ms"},
		{"3/1m30s", Rate{3, 90 * time.Second}, 30 * time.Second, "3/1m30s"},
		{"1000000000/s", Rate{1e9, time.Second}, time.Nanosecond, "1000000000/s"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if err != nil {
				t.Fatalf("ParseRate(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseRate(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if iv := got.Interval(); iv != tt.interval {
				t.Errorf("Interval() = %v, want %v", iv, tt.interval)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
		})
	}
}

func TestParseRateErrors(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"", `want COUNT/PERIOD`},
		{"100", `want COUNT/PERIOD`},
		{"100s", `want COUNT/PERIOD`},
		{"/s", `count "" is not a positive integer`},
		{"0/s", `count "0" is not a positive integer`},
		{"-5/s", `count "-5" is not a positive integer`},
		{"+5/s", `count "+5" is not a positive integer`},
		{"1.5/s", `count "1.5" is not a positive integer`},
		{" 5/s", `count " 5" is not a positive integer`},
		{"ten/s", `count "ten" is not a positive integer`},
		{"99999999999999999999/s", `is not a positive integer`},
		{"2000000000/s", `is more than 1000000000`},
		{"100/", `missing period`},
		{"100/x", `period "x" is not s, m, h, d or a duration`},
		{"100/sec", `period "sec" is not`},
		{"100/s ", `period "s " is not`},
		{"100/-1s", `period "-1s" is not`},
		{"100/0s", `period "0s" is not positive`},
		{"100/s/s", `period "s/s" is not`},
		{"2/1ns", `more than one event per nanosecond`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRate(tt.in)
			if err == nil {
				t.Fatalf("ParseRate(%q) = %+v, want error containing %q", tt.in, r, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRate(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), `ratelimit: invalid rate "`) {
				t.Errorf("error %q does not name the input", err)
			}
		})
	}
}

func TestRateText(t *testing.T) {
	var r Rate
	if err := r.UnmarshalText([]byte("10/m")); err != nil {
		t.Fatal(err)
	}
	if r != (Rate{10, time.Minute}) {
		t.Fatalf("UnmarshalText = %+v", r)
	}
	b, _ := r.MarshalText()
	if string(b) != "10/m" {
		t.Fatalf("MarshalText = %q", b)
	}
	if err := r.UnmarshalText([]byte("bogus")); err == nil {
		t.Fatal("UnmarshalText(bogus) succeeded")
	}
	if r != (Rate{10, time.Minute}) {
		t.Fatalf("failed UnmarshalText changed the value to %+v", r)
	}
}

func TestLimitValidate(t *testing.T) {
	sec := Rate{10, time.Second}
	tests := []struct {
		name string
		l    Limit
		ok   bool
	}{
		{"ok", Limit{sec, 1}, true},
		{"zero", Limit{}, false},
		{"zero burst", Limit{sec, 0}, false},
		{"negative burst", Limit{sec, -1}, false},
		{"zero count", Limit{Rate{0, time.Second}, 1}, false},
		{"negative period", Limit{Rate{1, -time.Second}, 1}, false},
		{"huge burst", Limit{sec, 2e9}, false},
		{"refill overflow", Limit{Rate{1, 24 * time.Hour}, 1e6}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.l.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidLimit) {
				t.Errorf("error %v is not ErrInvalidLimit", err)
			}
		})
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100/s", "10/m", "5000/h", "1/d", "20/10s", "1/500ms", "0/s", "/", "1/1ns", "9/1h2m3s4ms", "1e3/s", "1/-0s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ratelimit: invalid rate ") {
				t.Fatalf("error %q lacks the common prefix", err)
			}
			return
		}
		if r.Count < 1 || r.Per <= 0 || r.Interval() <= 0 {
			t.Fatalf("ParseRate(%q) accepted invalid %+v", s, r)
		}
		back, err := ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("round trip of %q via %q = %+v, %v", s, r.String(), back, err)
		}
	})
}
