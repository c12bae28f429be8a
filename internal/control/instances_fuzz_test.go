package control

import (
	"encoding/json"
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// FuzzCheckRegistration: whatever a sidecar sends, a registration is
// refused or yields a host:port of the caller's own address with a port
// from 1 to 65535, and labels within bounds.
func FuzzCheckRegistration(f *testing.F) {
	f.Add(`{"service":"orders","address":"127.0.0.1:9443","labels":{"version":"v2"}}`)
	f.Add(`{"service":"orders","address":"0.0.0.0:9443"}`)
	f.Add(`{"service":"orders","address":"[::]:1"}`)
	f.Add(`{"service":"orders","address":"[::ffff:127.0.0.1]:80"}`)
	f.Add(`{"service":"catalog","address":"127.0.0.1:9443"}`)
	f.Add(`{"service":"orders","address":"10.0.0.1:65536"}`)
	f.Add(`{"service":"orders","address":"localhost:1"}`)
	me := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, body string) {
		var reg InstanceRegistration
		if json.Unmarshal([]byte(body), &reg) != nil {
			return
		}
		addr, err := checkRegistration(&reg, "orders", me)
		if err != nil {
			if addr != "" || err.msg == "" || err.code == "" {
				t.Fatalf("a refusal with an address or without a reason: %q %+v", addr, err)
			}
			return
		}
		host, port, serr := net.SplitHostPort(addr)
		n, perr := strconv.Atoi(port)
		if serr != nil || perr != nil || n < 1 || n > 65535 || host != "127.0.0.1" || reg.Service != "orders" {
			t.Fatalf("accepted %q as %q", body, addr)
		}
		if len(reg.Labels) > maxInstanceLabels {
			t.Fatalf("accepted %d labels", len(reg.Labels))
		}
		for k, v := range reg.Labels {
			if !labelKey(k) || !labelValue(v) {
				t.Fatalf("accepted label %q=%q", k, v)
			}
		}
	})
}
