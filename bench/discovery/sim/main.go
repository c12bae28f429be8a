// Command sim is the load side of bench/discovery/run.sh: it drives one or
// more running `ward server` processes with the service discovery workload
// and measures how fast instance changes reach the proxies that call the
// changed service.
//
//	sim run -servers URL[,URL] -data-dir DIR ... -out result.json
//	sim report result.json...
//
// run applies -services Services without endpoints and one AccessPolicy
// each (svc-i may be called by svc-(i-1) and svc-(i-2)), enrolls one SVID
// per service, registers -instances instances spread evenly over the
// services, each from its own loopback source address 127.x.y.z that is
// also the host of its registered address, renews each at a third of the
// TTL the server states, and runs one simulated proxy per service that
// long-polls its snapshot with that service's SVID. Then, for -duration,
// it churns -churn of the instances per minute (deregister the oldest,
// register a new one at a new address), spread evenly, and records for
// every change the time from the server's answer to each interested
// proxy's first snapshot that reflects it. It samples the CPU time and
// peak RSS of the processes named by -pids (and of PostgreSQL with
// -pg-pid) over that window. Changes go to the first server; proxies are
// spread over all of them, so with two servers a change crosses servers.
//
// report prints the results as one table and the target line.
//
// It is a benchmark tool, not a product binary: it talks only to the
// loopback addresses it is given.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sim run FLAGS | sim report RESULT.json...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: run or report", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}
