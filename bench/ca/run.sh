#!/usr/bin/env bash
# bench/ca/run.sh runs the CA issuance benchmarks and prints a table.
#
#   bench/ca/run.sh                          every benchmark, 3s each
#   bench/ca/run.sh -bench Enroll/sqlite     one of them
#   bench/ca/run.sh -count 5                 repeat (for benchstat)
#   bench/ca/run.sh -cpuprofile /tmp/cpu.out -bench Enroll/sqlite
#
# Extra arguments go to go test after the defaults, so they override them.
# The raw go test output is kept in $BENCH_OUT (default: a temporary file)
# for benchstat. Everything runs on this machine; PostgreSQL is a throwaway
# server on 127.0.0.1 started by the benchmark itself.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root"
export PATH="/usr/local/go/bin:$PATH"
if [[ "${GOFLAGS:-}" != *-buildvcs* ]]; then
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
fi
out=${BENCH_OUT:-$(mktemp -t ward-bench-ca.XXXXXX)}

echo "cores: $(nproc), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench . -benchtime 3s ./bench/ca/ "$@" | tee "$out"
status=${PIPESTATUS[0]}
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw output: $out"
echo

# A table of the Benchmark lines: name, then the metrics by unit.
awk '
/^Benchmark/ {
	name = $1
	sub(/^Benchmark/, "", name)
	sub(/-[0-9]+$/, "", name)
	delete m
	for (i = 3; i < NF; i += 2) m[$(i + 1)] = $i
	printf "%-28s %14s %12s %12s\n", name, fmt(m["issuances/s"], "%.0f"), fmt(m["ns/op"] / 1000, "%.1f"), fmt(m["cpu-us/op"], "%.1f")
}
function fmt(v, f) { return v == "" ? "-" : sprintf(f, v) }
BEGIN { printf "%-28s %14s %12s %12s\n", "benchmark", "issuances/s", "wall-us/op", "cpu-us/op" }
' "$out"
exit "$status"
