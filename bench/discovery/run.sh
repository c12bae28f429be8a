#!/usr/bin/env bash
# bench/discovery/run.sh: service discovery at scale. 5,000 instances of
# 500 services register, renew at TTL/3 and churn (10% replaced per
# minute) against one `ward server` on SQLite, then against two `ward
# server` processes sharing one PostgreSQL; 500 simulated proxies (one per
# service) long-poll their snapshots. Measured per store over a window:
# p50/p99/max from a change's answer to each interested proxy's first
# snapshot reflecting it (target p99 < 1 s), the server processes' CPU
# (% of a core, µs per registration/renewal/deregistration) and max RSS,
# and PostgreSQL's CPU. See README.md.
#
# Environment (defaults in brackets):
#   SERVICES [500]     services, each with one simulated proxy
#   INSTANCES [5000]   instances, spread evenly over the services
#   DURATION [120s]    measured window per store
#   CHURN [0.10]       fraction of the instances replaced per minute
#   STATIC [0]         1: every Service also lists one static endpoint, which
#                      registered ones join
#   TTL []             --instance-ttl of the servers (empty: the server's default)
#   STORES ["sqlite postgres"]  the phases to run
#   PROFILE [0]        1: build the servers with pprof (bench/mesh/wardprof)
#                      and print the top of CPU profiles of the first 30 s
#                      of registrations and of the window
#   WARD_LOG_LEVEL [info]  the servers' --log-level
#   BENCH_DIR          keep everything there instead of a new temp dir
#   MAX_SECONDS [600]  hard limit for the whole script
set -euo pipefail

SERVICES=${SERVICES:-500}
INSTANCES=${INSTANCES:-5000}
DURATION=${DURATION:-120s}
CHURN=${CHURN:-0.10}
TTL=${TTL:-}
STATIC=${STATIC:-0}
STORES=${STORES:-sqlite postgres}
PROFILE=${PROFILE:-0}
WARD_LOG_LEVEL=${WARD_LOG_LEVEL:-info}
MAX_SECONDS=${MAX_SECONDS:-600}
NICE=0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root"
export PATH="/usr/local/go/bin:$PATH"
if [[ "${GOFLAGS:-}" != *-buildvcs* ]]; then
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
fi
for s in $STORES; do
	[[ $s == sqlite || $s == postgres ]] || { echo "STORES: sqlite and/or postgres, not \"$s\"" >&2; exit 2; }
done

# log, die, install_missing, free_port, wait_http, bench_init (workspace
# $T, PIDS stopped on exit, the MAX_SECONDS watchdog).
# shellcheck source=bench/gateway/lib.sh
source "$root/bench/gateway/lib.sh"

need=()
command -v curl >/dev/null || need+=(curl)
pg_bin() { find /usr/lib/postgresql -maxdepth 3 -name initdb -path '*/bin/*' 2>/dev/null | sort -V | tail -1 | xargs -r dirname; }
if [[ " $STORES " == *" postgres "* && -z $(pg_bin) ]]; then need+=(postgresql); fi
install_missing "${need[@]}"

bench_init ward-bench-discovery
# Thousands of connections: one per instance on the server and here (Go
# raises its soft limit to the hard one; so does this, for the others).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < INSTANCES + SERVICES + 1000)); then
	die "open files limit $(ulimit -n) is too low for $INSTANCES instances and $SERVICES proxies"
fi
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

log "building ward and the simulator"
if [[ $PROFILE == 1 ]]; then
	go build -o "$T/ward" ./bench/mesh/wardprof
else
	go build -o "$T/ward" ./cmd/ward
fi
go build -o "$T/sim" ./bench/discovery/sim
SERVER_FLAGS=()
if [[ -n $TTL ]]; then SERVER_FLAGS+=(--instance-ttl "$TTL"); fi

# start_server NAME DATA_DIR [FLAG...]: a ward server on loopback ports;
# sets SERVER_PID, SERVER_URL and SERVER_PPROF.
start_server() {
	local name=$1 dir=$2 api pub
	shift 2
	api=127.0.0.1:$(free_port)
	pub=127.0.0.1:$(free_port)
	SERVER_PPROF=
	local env=()
	if [[ $PROFILE == 1 ]]; then
		SERVER_PPROF=127.0.0.1:$(free_port)
		env=(WARD_PPROF="$SERVER_PPROF")
	fi
	env "${env[@]}" "$T/ward" --log-level "$WARD_LOG_LEVEL" server --data-dir "$dir" --trust-domain example.org \
		--listen "$api" --public-listen "$pub" "${SERVER_FLAGS[@]}" "$@" >"$T/$name.log" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	SERVER_URL=https://$api
	wait_http "http://$pub/metrics" 200 || die "server $name did not start; see $T/$name.log"
	for _ in $(seq 100); do
		[[ -s $dir/bundle.pem && -s $dir/operator/admin.pem ]] && break
		sleep 0.1
	done
	log "server $name: pid $SERVER_PID, $SERVER_URL"
}

# stop PID...: SIGTERM, then wait for them to exit (KILL after 10 s).
stop() {
	local p
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in $(seq 50); do
		local alive=0
		for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || return 0
		sleep 0.2
	done
	for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}

# simulate LABEL SERVERS DATA_DIR PIDS [FLAG...]: the workload and its
# measurement; the result goes to $T/LABEL.json.
simulate() {
	local label=$1 servers=$2 dir=$3 pids=$4
	shift 4
	if [[ $STATIC == 1 ]]; then set -- -static "$@"; fi
	log "$label: $INSTANCES instances of $SERVICES services, $DURATION measured, churn $CHURN/min"
	# In the background, so that the time limit's signal interrupts the wait.
	"$T/sim" run -label "$label" -servers "$servers" -data-dir "$dir" -pids "$pids" \
		-services "$SERVICES" -instances "$INSTANCES" -duration "$DURATION" -churn "$CHURN" \
		-clk-tck "$(getconf CLK_TCK)" -out "$T/$label.json" -pprof-out "$T" "$@" \
		>"$T/$label.table" 2> >(tee "$T/$label.sim.log" >&3) &
	local pid=$!
	PIDS+=("$pid")
	wait "$pid" || die "$label: the simulation failed; see $T/$label.sim.log"
	sed 's/^/  /' "$T/$label.table" >&3
}

top_profiles() {
	local f
	[[ $PROFILE == 1 ]] || return 0
	for f in "$T/$1"-[0-9]*.pprof "$T/$1"-register-*.pprof; do
		[[ -s $f ]] || continue
		log "top of $f (flat):"
		go tool pprof -top -nodecount 25 "$T/ward" "$f" 2>/dev/null | sed 's/^/  /' >&3 || true
		log "top of $f (cumulative):"
		go tool pprof -top -cum -nodecount 40 "$T/ward" "$f" 2>/dev/null | sed 's/^/  /' >&3 || true
	done
}

results=()
for store in $STORES; do
	case $store in
	sqlite)
		start_server sqlite "$T/sqlite"
		pprof=()
		[[ -n $SERVER_PPROF ]] && pprof=(-pprof "$SERVER_PPROF")
		simulate sqlite "$SERVER_URL" "$T/sqlite" "$SERVER_PID" "${pprof[@]}"
		stop "$SERVER_PID"
		top_profiles sqlite
		results+=("$T/sqlite.json")
		;;
	postgres)
		# A throwaway cluster on loopback, as internal/store/pgtest starts
		# one, but with PostgreSQL's default durability: the store's cost is
		# part of what is measured.
		bin=$(pg_bin)
		pg=$T/pg
		mkdir -p "$pg"
		chown postgres: "$pg"
		chmod o+x "$T" # PostgreSQL runs as postgres; it must reach $pg
		setpriv --reuid=postgres --regid=postgres --init-groups "$bin/initdb" -D "$pg/data" -U postgres -A trust -E UTF8 --locale=C >"$pg/initdb.log" 2>&1 ||
			die "initdb failed; see $pg/initdb.log"
		pgport=$(free_port)
		setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$pg/data" -h 127.0.0.1 -p "$pgport" -k "$pg" \
			-c max_connections=300 >"$pg/postgres.log" 2>&1 &
		pgpid=$!
		PIDS+=("$pgpid")
		for _ in $(seq 100); do
			"$bin/pg_isready" -q -h 127.0.0.1 -p "$pgport" && break
			sleep 0.2
		done
		setpriv --reuid=postgres --regid=postgres --init-groups "$bin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres ward ||
			die "PostgreSQL did not start; see $pg/postgres.log"
		dsn="postgres://postgres@127.0.0.1:$pgport/ward?sslmode=disable"
		log "PostgreSQL: pid $pgpid, 127.0.0.1:$pgport"
		start_server pg-a "$T/pg-a" --store "$dsn"
		a_pid=$SERVER_PID a_url=$SERVER_URL a_pprof=$SERVER_PPROF
		start_server pg-b "$T/pg-b" --store "$dsn" --kek-file "$T/pg-a/kek"
		pprof=()
		[[ -n $a_pprof ]] && pprof=(-pprof "$a_pprof,$SERVER_PPROF")
		simulate postgres "$a_url,$SERVER_URL" "$T/pg-a" "$a_pid,$SERVER_PID" -pg-pid "$pgpid" "${pprof[@]}"
		stop "$a_pid" "$SERVER_PID"
		stop "$pgpid"
		top_profiles postgres
		results+=("$T/postgres.json")
		;;
	esac
done

log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$T/sim" report "${results[@]}"
