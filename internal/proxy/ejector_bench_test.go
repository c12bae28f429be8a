package proxy

import (
	"fmt"
	"testing"
)

// BenchmarkEjectorPick measures one Pick and its Report, with 3 and 100
// hosts.
func BenchmarkEjectorPick(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			hosts := make([]string, n)
			for i := range hosts {
				hosts[i] = fmt.Sprintf("10.0.0.%d:8443", i)
			}
			e := NewEjector(hosts, EjectorConfig{})
			b.ReportAllocs()
			for b.Loop() {
				l, err := e.Pick()
				if err != nil {
					b.Fatal(err)
				}
				e.Done(l, Succeeded)
			}
		})
	}
}
