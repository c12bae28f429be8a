// Command wardprof is the ward binary with net/http/pprof on a side port,
// for profiling the sidecar under bench/mesh/run.sh (PROFILE=1). It is a
// benchmark tool, not a product binary: set WARD_PPROF=127.0.0.1:PORT and
// run it exactly like ward. The address must be loopback.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"

	"github.com/wardsec/ward/internal/cli"
)

func main() {
	if addr := os.Getenv("WARD_PPROF"); addr != "" {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			fmt.Fprintf(os.Stderr, "wardprof: WARD_PPROF=%q must be a loopback host:port\n", addr)
			os.Exit(2)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "wardprof:", err)
			os.Exit(2)
		}
		go func() { _ = http.Serve(l, nil) }()
	}
	os.Exit(cli.Main(os.Args[1:]))
}
