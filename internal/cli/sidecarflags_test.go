package cli

import (
	"io"
	"os"
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

// TestSidecarDocRegistrationExample parses the `ward sidecar` command of
// docs/sidecar.md's "Registration and draining" section, as written, with
// the real flags, and checks the instance it registers.
func TestSidecarDocRegistrationExample(t *testing.T) {
	data, err := os.ReadFile("../../docs/sidecar.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(data), "## Registration and draining")
	if !ok {
		t.Fatal("docs/sidecar.md has no Registration and draining section")
	}
	_, block, ok := strings.Cut(sec, "```sh\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the section has no sh block")
	}
	args := strings.Fields(strings.ReplaceAll(block, "\\\n", " "))
	if len(args) < 2 || args[0] != "ward" || args[1] != "sidecar" {
		t.Fatalf("the block is not a ward sidecar command: %q", args)
	}
	cmd, rest, err := NewRoot(io.Discard, io.Discard).Find(args[1:])
	if err != nil || cmd.Name() != "sidecar" {
		t.Fatalf("find: %v", err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("the documented flags: %v", err)
	}
	f := cmd.Flags()
	advertise, _ := f.GetString("advertise")
	labels, _ := f.GetStringArray("label")
	drain, _ := f.GetDuration("drain")
	reg, err := registration(advertise, labels, drain)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Advertise != "10.0.0.5:9443" || reg.Labels["version"] != "v2" || reg.Labels["zone"] != "a" || reg.Drain != 2*time.Second {
		t.Fatalf("documented registration: %+v", reg)
	}
	// The documented default drain is the flag's.
	if def := f.Lookup("drain").DefValue; def != "2s" || !strings.Contains(string(data), "| `--drain` | `2s` |") {
		t.Fatalf("--drain default %s, and the flags table must say so", def)
	}
}
