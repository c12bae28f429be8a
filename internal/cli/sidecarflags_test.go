package cli

import (
	"strings"
	"testing"
	"time"
)

func TestSidecarInstanceFlags(t *testing.T) {
	reg, err := registration("10.0.0.5:9443", []string{"version=v2", "zone=eu-1a"}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Advertise != "10.0.0.5:9443" || reg.Drain != 3*time.Second || len(reg.Labels) != 2 || reg.Labels["version"] != "v2" || reg.Labels["zone"] != "eu-1a" {
		t.Fatalf("registration: %+v", reg)
	}
	if reg, err := registration("", nil, 0); err != nil || reg.Advertise != "" || reg.Labels != nil || reg.Drain != 0 {
		t.Fatalf("no flags: %+v %v", reg, err)
	}
	for _, c := range []struct {
		advertise string
		labels    []string
		drain     time.Duration
		want      string
	}{
		{advertise: "10.0.0.5", want: `--advertise "10.0.0.5": want host:port`},
		{advertise: "10.0.0.5:http", want: "is not a number from 1 to 65535"},
		{advertise: "10.0.0.5:0", want: "is not a number from 1 to 65535"},
		{advertise: "10.0.0.5:70000", want: "is not a number from 1 to 65535"},
		{advertise: ":9443", want: "the host is missing"},
		{labels: []string{"version"}, want: `--label "version": want KEY=VALUE`},
		{labels: []string{"=v2"}, want: "want KEY=VALUE"},
		{labels: []string{"ver sion=v2"}, want: "want KEY=VALUE"},
		{labels: []string{"zone=a\nb"}, want: "want KEY=VALUE"},
		{labels: []string{"zone=a", "zone=b"}, want: "zone given twice"},
		{drain: -time.Second, want: "must not be negative"},
	} {
		_, err := registration(c.advertise, c.labels, c.drain)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q %v: %v, want %q", c.advertise, c.labels, c.drain, err, c.want)
		}
	}
}

func TestSidecarFlagsRefuseAdvertiseWithConfig(t *testing.T) {
	var out strings.Builder
	err := Run(t.Context(), &out, "sidecar", "--service", "orders", "--server", "https://127.0.0.1:1", "--bundle", "/nonexistent",
		"--config", "x.yaml", "--advertise", "10.0.0.5:9443")
	if err == nil || !strings.Contains(err.Error(), "not with --config") {
		t.Fatalf("--advertise with --config: %v", err)
	}
}
