// Package detectbench measures detection and bans: the cost of the ban
// lookup every gateway and sidecar makes per request, with many bans in
// force, and the server's cost per ingested record with the default
// detection rules. The benchmarks are in the package's tests; run them
// with `go test -run xxx -bench . ./bench/detect`. The time from an
// attacker's first request to a ban enforced by three gateways, p50/p99,
// is measured end to end by run.sh (test/e2e's TestTimeToBan); the
// figures are in README.md.
package detectbench
