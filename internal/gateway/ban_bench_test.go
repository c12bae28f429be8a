package gateway_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/gateway"
)

// BenchmarkBanStage measures the ban stage with 1,000 bans in force that
// the request does not match (the common case: every probe is made):
// hygiene alone, then hygiene and ban; the difference is the stage's price.
func BenchmarkBanStage(b *testing.B) {
	var bans strings.Builder
	exp := time.Now().Add(time.Hour)
	for i := range 1000 {
		switch {
		case i < 500:
			bans.WriteString(banDoc(fmt.Sprintf("a%d", i), fmt.Sprintf("source: 198.51.%d.%d", i/250, i%250), exp))
		case i < 600:
			bans.WriteString(banDoc(fmt.Sprintf("n%d", i), fmt.Sprintf("source: 10.%d.0.0/%d", i-500, 16+(i%9)), exp))
		default:
			const alpha = "abcdefghijklmnopqrstuvwxyz234567"
			p := []byte("qqqqqqqq")
			for j, n := 7, i; n > 0; j, n = j-1, n/32 {
				p[j] = alpha[n%32]
			}
			bans.WriteString(banDoc(fmt.Sprintf("k%d", i), "apiKey: "+string(p), exp))
		}
	}
	e := newEdgeWith(b, func(c *gateway.Config) {
		c.Events = discard{}
		data, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			b.Fatal(err)
		}
		c.ConfigFile = ""
		c.Initial = &gateway.Snapshot{Origin: "server version 1", Version: 1, Data: append(data, bans.String()...)}
	})
	names, prefix := gateway.Stages(e.gw)
	if names[1] != "ban" {
		b.Fatalf("stage 2 is %s, want ban", names[1])
	}
	r := httptest.NewRequest("GET", "https://localhost/orders/1", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("X-Api-Key", e.apiKey)
	for n := 1; n <= 2; n++ {
		h := prefix(n)
		b.Run(names[n-1], func(b *testing.B) {
			b.ReportAllocs()
			w := httptest.NewRecorder()
			for b.Loop() {
				w.Code = 0
				h.ServeHTTP(w, r)
				if w.Code >= http.StatusBadRequest {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
