#!/usr/bin/env bash
# The vault's benchmarks: secret reads per second over mutual TLS on SQLite
# and PostgreSQL, the envelope's own cost, and `ward run`'s start-up
# overhead, with Go benchmarks and, when hyperfine is installed, hyperfine
# (ward run -- true against true). Arguments go to `go test` after the
# defaults.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
go test -run '^$' -bench . -benchtime 3s ./bench/vault/ "$@"

command -v hyperfine >/dev/null || { echo "hyperfine not installed: skipping its run"; exit 0; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$work"' EXIT
cd "$work"
(cd "$root" && go build -o "$work/ward" ./cmd/ward)
./ward server --data-dir ./data --trust-domain example.org --listen 127.0.0.1:0 --public-listen 127.0.0.1:0 --log-level warn > server.log 2>&1 &
until [ -f data/client.json ]; do kill -0 $! 2>/dev/null || { cat server.log; exit 1; }; sleep 0.2; done
export WARD_DATA_DIR=$PWD/data
server=$(sed -n 's/.*"server": "\(.*\)".*/\1/p' data/client.json)
printf '%s\n' 'apiVersion: ward/v1' 'kind: SecretPolicy' 'metadata: {name: orders-secrets}' \
    'spec: {readers: [svc/orders], paths: ["orders/**"]}' > policy.yaml
./ward apply -f policy.yaml > /dev/null
head -c 24 /dev/urandom | base64 | ./ward secret put orders/db/password > /dev/null
token=$(./ward token create --id spiffe://example.org/svc/orders 2>/dev/null)
run="./ward run --server $server --bundle data/bundle.pem --service orders --data-dir ./id --log-level warn --secret DB_PASSWORD=orders/db/password"
$run --token "$token" -- true   # enroll once; every run below reuses the SVID
hyperfine -N --warmup 5 --runs 100 'true' "$run -- true"
