// Package detectbench measures detection and bans: the cost of the ban
// lookup every gateway and sidecar makes per request, with many bans in
// force, and the server's cost per ingested record with the default
// detection rules. The benchmarks are in the package's tests; run them
// with `go test -run xxx -bench . ./bench/detect`. The time from an
// attack to a ban enforced by several proxies is measured end to end by
// test/e2e (TestBanReachesEveryProxy, TestFfufCyclingAPIKeys,
// TestHydraBruteForce), which log it.
package detectbench
