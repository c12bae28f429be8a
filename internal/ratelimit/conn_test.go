package ratelimit

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestConnLimiter: a source's connections over its rate are closed at once;
// the ones within it are served.
func TestConnLimiter(t *testing.T) {
	clk := newFakeClock()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := NewConnLimiter(ln, NewLocal(LocalOptions{Now: clk.Now}), Limit{Rate: mustRate(t, "1/h"), Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, err := cl.Accept()
			if err != nil {
				return // listener closed
			}
			_, _ = c.Write([]byte("k"))
			_ = c.Close()
		}
	}()

	outcome := func() string {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			return "closed"
		}
		return "served"
	}
	want := []string{"served", "served", "served", "closed", "closed"}
	for i, w := range want {
		if got := outcome(); got != w {
			t.Errorf("connection %d: %s, want %s", i, got, w)
		}
	}
	if n := cl.Rejected(); n != 2 {
		t.Errorf("Rejected() = %d, want 2", n)
	}
	clk.Advance(time.Hour)
	if got := outcome(); got != "served" {
		t.Errorf("after the rate refilled: %s, want served", got)
	}
	_ = cl.Close()
	<-served
}

func TestConnLimiterInvalidLimit(t *testing.T) {
	if _, err := NewConnLimiter(nil, NewLocal(LocalOptions{}), Limit{}); err == nil {
		t.Fatal("NewConnLimiter with a zero Limit succeeded")
	}
}

func TestSourceKey(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
		ok   bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1234}, "conn:192.0.2.7", true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1234}, "conn:192.0.2.7", true},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "conn:2001:db8:1:2::/64", true},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::1"), Port: 1}, "conn:2001:db8:1:2::/64", true},
		{&net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 53}, "conn:198.51.100.1", true},
		{&net.UnixAddr{Name: "/run/ward.sock", Net: "unix"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr.String(), func(t *testing.T) {
			got, ok := sourceKey(tt.addr)
			if got != tt.want || ok != tt.ok {
				t.Errorf("sourceKey(%v) = %q, %v; want %q, %v", tt.addr, got, ok, tt.want, tt.ok)
			}
		})
	}
}
