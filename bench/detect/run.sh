#!/usr/bin/env bash
# bench/detect/run.sh: time from the first attack request to a ban
# enforced on three gateways, p50/p99.
#
# It runs test/e2e's TestTimeToBan: a `ward server` and three `ward
# gateway` processes on loopback; per trial (WARD_BAN_TRIALS, default 20,
# at most 200) a loop of made-up API keys, 50 a second, from its own
# address 127.0.0.20+i, in turn to the three gateways, until each answers
# 403 banned (the default credential-cycling rule: 5 keys a minute). A
# trial is bounded at 5 s, the whole run at 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
go test -count=1 -timeout 10m -run '^TestTimeToBan$' -v ./test/e2e/ | grep -E 'time to ban|^(---|ok|FAIL)'
