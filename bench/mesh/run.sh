#!/usr/bin/env bash
# bench/mesh/run.sh: the mesh data path through a Ward sidecar pair, side by
# side with an nginx pair doing the same job and with no proxy at all.
#
#   client ──HTTP/1.1──▶ A ══ mutual TLS 1.3 ══▶ B ──HTTP/1.1──▶ app
#
#   direct  client → app
#   nginx   A: nginx, proxy_pass https:// with a client SVID, keepalive pool
#           B: nginx, ssl_verify_client on (Ward bundle), TLS 1.3, keepalive
#   ward    A: ward sidecar --service client --upstream orders=ADDR
#           B: ward sidecar --service orders, AccessPolicy: svc/client GET /*
#   app     a third nginx, return 200 "ok", the same for every set-up
#
# The SVIDs of both pairs come from one Ward server started here. Measured
# per set-up: requests/s at saturation (h2load --h1), CPU µs per request of
# the proxy processes (utime+stime, /proc/PID/stat), p50/p99 at a fixed rate
# and what the proxies add, the max VmRSS of each proxy under load, and (with
# perf, in extra runs) system calls and context switches per request.
# Proxies on CPU 1 (GOMAXPROCS=1, worker_processes 1), h2load and the app on
# CPU 0. All set-ups run at once and are measured in alternating rounds, so
# that other work on the machine weighs on each alike. Everything listens on
# 127.0.0.1; see README.md.
#
# Environment (defaults in brackets):
#   SAT_ROUNDS [5] x SAT_SECONDS [3]   saturation rounds per set-up
#   CONNS [64]                         connections at saturation
#   LAT_ROUNDS [5] x LAT_SECONDS [2]   fixed-rate rounds per set-up
#   RATE [1000], LAT_CONNS [10]        the fixed rate, over that many connections
#   SETUPS ["direct nginx ward", plus alt with WARD_ALT_SRC]
#   WARD_ALT_SRC        another checkout of Ward (a branch with an optimization):
#                       its ward is built too and measured as set-up "alt",
#                       interleaved with the others, and compared with ward
#   WARD_ALT_LOG_LEVEL  --log-level of the alt pair [WARD_LOG_LEVEL]
#   WARD_HOPS [h2]      the protocols of Ward's mesh hop (A => B) to measure:
#                       h2 is Ward as built (HTTP/2 for every request but
#                       upgrades); "h2 h1" also builds ward-h1 (go build
#                       -ldflags -X .../internal/mesh.hop=h1: HTTP/1.1
#                       keep-alive pools for HTTP/1.x callers, which h2load
#                       --h1 is) and measures it as set-up ward-h1, compared
#                       with ward
#   PROFILE [0]         1: then profile the ward pair under saturation with the
#                       pprof build (bench/mesh/wardprof), top 15 flat and cum
#   WARD_LOG_LEVEL [info]  the sidecars' --log-level (info: B logs an audit
#                       line per request, as shipped; warn: it does not)
#   NGINX_ACCESS_LOG [b]   nginx proxies writing an access log: b, ab, none
#                       (b mirrors Ward: B records every request, A none)
#   NGINX_VERIFY [off]  proxy_ssl_verify of nginx A (on fails: see README)
#   NICE [0]            niceness of every benchmark process (root may go
#                       below 0 to crowd out other work on a shared machine)
#   BENCH_DIR           keep everything there instead of a new temp dir
#   MAX_SECONDS [300]   hard limit for the whole script
set -euo pipefail

SAT_ROUNDS=${SAT_ROUNDS:-5}
SAT_SECONDS=${SAT_SECONDS:-3}
CONNS=${CONNS:-64}
LAT_ROUNDS=${LAT_ROUNDS:-5}
LAT_SECONDS=${LAT_SECONDS:-2}
RATE=${RATE:-1000}
LAT_CONNS=${LAT_CONNS:-10}
WARD_ALT_SRC=${WARD_ALT_SRC:-}
WARD_HOPS=${WARD_HOPS:-h2}
case " $WARD_HOPS " in
" h2 ") hop_setups="" ;;
" h2 h1 " | " h1 h2 ") hop_setups=" ward-h1" ;;
*) echo "WARD_HOPS must be \"h2\" or \"h2 h1\", not \"$WARD_HOPS\"" >&2; exit 2 ;;
esac
if [[ -n $WARD_ALT_SRC ]]; then SETUPS=${SETUPS:-direct nginx ward$hop_setups alt}; else SETUPS=${SETUPS:-direct nginx ward$hop_setups}; fi
PROFILE=${PROFILE:-0}
WARD_LOG_LEVEL=${WARD_LOG_LEVEL:-info}
WARD_ALT_LOG_LEVEL=${WARD_ALT_LOG_LEVEL:-$WARD_LOG_LEVEL}
NGINX_ACCESS_LOG=${NGINX_ACCESS_LOG:-b}
NGINX_VERIFY=${NGINX_VERIFY:-off}
NICE=${NICE:-0}
MAX_SECONDS=${MAX_SECONDS:-300}
WARMUP_REQS=300      # per connection
MAX_REQS=2000000     # per saturation round

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root"
export PATH="/usr/local/go/bin:$PATH"
if [[ "${GOFLAGS:-}" != *-buildvcs* ]]; then
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
fi

# Helpers shared with bench/gateway (log, die, free_port, expect, CPU and
# RSS sampling, nginx workers, median and formatting).
# shellcheck source=bench/gateway/lib.sh
source "$root/bench/gateway/lib.sh"

# ---------------------------------------------------------------- packages
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
	log "installing ${need[*]}"
	# The Debian nginx service must not start: invoke-rc.d asks policy-rc.d.
	made_policy=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
	if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi
# perf (Debian linux-perf) counts system calls in an extra round; optional.
if ! command -v perf >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 || true
fi
PERF_OK=0
if command -v perf >/dev/null && perf stat -x, -o /dev/null -e raw_syscalls:sys_enter true 2>/dev/null; then PERF_OK=1; fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---------------------------------------------------------------- workspace
T=${BENCH_DIR:-$(mktemp -d -t ward-bench-mesh.XXXXXX)}
mkdir -p "$T"
T=$(cd "$T" && pwd -P)
PIDS=()
WATCHDOG=

cleanup() {
	local rc=$? p alive
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.3
	done
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	if [[ -n $WATCHDOG ]]; then kill "$WATCHDOG" 2>/dev/null || true; fi
	wait 2>/dev/null || true
	log "stopped everything; raw output in $T"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'log "time limit (${MAX_SECONDS}s) or signal: stopping"; exit 124' TERM

# A hard bound on the whole run, in one-second sleeps so that nothing lingers.
(
	for ((i = 0; i < MAX_SECONDS; i++)); do sleep 1; done
	kill -TERM $$ 2>/dev/null
) &
WATCHDOG=$!

# ---------------------------------------------------------------- CPUs
ncpu=$(nproc)
if ((ncpu >= 2)); then
	CLIENT_CPU=0 PROXY_CPU=1
else
	CLIENT_CPU=0 PROXY_CPU=0
	log "only one CPU: the proxies share it with the load generator"
fi
# Background processes start as simple commands (taskset execs them), so
# that $! is the process itself and the trap stops it.
PIN_CLIENT=(nice -n "$NICE" taskset -c "$CLIENT_CPU")
PIN_PROXY=(nice -n "$NICE" taskset -c "$PROXY_CPU")
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- build
log "building ward"
go build -o "$T/ward" ./cmd/ward
if [[ $PROFILE == 1 ]]; then go build -o "$T/wardprof" ./bench/mesh/wardprof; fi
if [[ " $SETUPS " == *" ward-h1 "* ]]; then
	log "building ward-h1 (HTTP/1.1 keep-alive on the mesh hop for HTTP/1.x callers)"
	go build -ldflags "-X github.com/wardsec/ward/internal/mesh.hop=h1" -o "$T/ward-h1" ./cmd/ward
fi
if [[ -n $WARD_ALT_SRC ]]; then
	log "building the alt ward from $WARD_ALT_SRC"
	(cd "$WARD_ALT_SRC" && go build -o "$T/ward-alt" ./cmd/ward)
fi
# From here on this script and what it starts run on the client CPU, except
# the proxies (PIN_PROXY).
taskset -p -c "$CLIENT_CPU" $$ >/dev/null
renice -n "$NICE" -p $$ >/dev/null

# ---------------------------------------------------------------- helpers
USED_PORTS=" "

# wait_http URL STATUS: until URL answers STATUS, 20 s at most.
wait_http() {
	local code
	for _ in $(seq 100); do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)
		[[ $code == "$2" ]] && return 0
		sleep 0.2
	done
	return 1
}

# h2 ARGS: h2load over HTTP/1.1, bounded, in the background so that the
# time limit can interrupt the wait and the trap can stop it.
h2() {
	timeout 120 h2load --h1 "$@" &
	local p=$!
	PIDS+=("$p")
	wait "$p"
}


# ---------------------------------------------------------------- the app
declare -A URL PROXIES
APP_PORT=$(free_port)

# nginx_start NAME BODY: an nginx of its own (prefix, pid, logs in $T/NAME),
# one worker, on the proxy CPU unless it is the app.
nginx_start() {
	local name=$1 body=$2 d="$T/$1" pin
	mkdir -p "$d/logs" "$d/tmp"
	cat >"$d/nginx.conf" <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
$body
}
EOF
	"$NGINX" -t -q -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" || die "nginx $name: bad configuration"
	pin=("${PIN_PROXY[@]}")
	[[ $name == app ]] && pin=("${PIN_CLIENT[@]}")
	"${pin[@]}" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" -g 'daemon off;' >"$d/logs/stdout" 2>&1 &
	PIDS+=($!)
	NGINX_MASTER=$!
}


nginx_start app "
    server {
        listen 127.0.0.1:$APP_PORT backlog=4096;
        location / { default_type text/plain; return 200 \"ok\"; }
    }"
wait_http "http://127.0.0.1:$APP_PORT/" 200 || die "the app did not start"

# ---------------------------------------------------------------- ward server and identities
WARD="$T/ward"
DATA="$T/ward-data"
TD=bench.local
"${PIN_CLIENT[@]}" "$WARD" server --data-dir "$DATA" --trust-domain "$TD" \
	--listen "127.0.0.1:$(free_port)" --public-listen "127.0.0.1:$(free_port)" >"$T/ward-server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 150); do [[ -f $DATA/client.json ]] && break; sleep 0.2; done
[[ -f $DATA/client.json ]] || die "ward server did not start: $(tail -5 "$T/ward-server.log")"
SERVER=$(sed -n 's/.*"server": *"\([^"]*\)".*/\1/p' "$DATA/client.json")
BUNDLE="$DATA/bundle.pem" # root and intermediate: the CA file of both pairs
[[ $(grep -c 'BEGIN CERTIFICATE' "$BUNDLE") -ge 2 ]] || die "$BUNDLE should hold the root and the intermediate"
token() { "$WARD" token create --id "spiffe://$TD/svc/$1" --data-dir "$DATA" 2>/dev/null | head -1; }
log "ward server at $SERVER"

# ---------------------------------------------------------------- set-ups
# start_SETUP sets URL[SETUP] (what the client calls) and PROXIES[SETUP]
# (NAME=PID of the measured processes: A, B; extras have a dot in NAME).

start_direct() {
	URL[direct]="http://127.0.0.1:$APP_PORT/"
	PROXIES[direct]=""
}

start_nginx() {
	local pa pb alog=off blog=off ma mb id
	pa=$(free_port) pb=$(free_port)
	for id in nginx-a nginx-b; do
		"$WARD" identity enroll --server "$SERVER" --bundle "$BUNDLE" --token "$(token "$id")" --out "$T/id-$id" >>"$T/enroll.log" 2>&1 ||
			die "enroll $id: $(tail -3 "$T/enroll.log")"
	done
	[[ $NGINX_ACCESS_LOG == *a* ]] && alog="$T/nginx-a/logs/access.log"
	[[ $NGINX_ACCESS_LOG == *b* ]] && blog="$T/nginx-b/logs/access.log"
	# B, the server side of the mesh hop: verifies A's SVID chain, GET only.
	nginx_start nginx-b "
    upstream app { server 127.0.0.1:$APP_PORT; keepalive 64; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:$pb ssl backlog=4096;
        access_log $blog;
        ssl_protocols TLSv1.3;
        ssl_certificate $T/id-nginx-b/svid.pem;
        ssl_certificate_key $T/id-nginx-b/key.pem;
        ssl_verify_client on;
        ssl_client_certificate $BUNDLE;
        ssl_verify_depth 2;
        location / {
            limit_except GET { deny all; }
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Ward-Peer-Id \$ssl_client_s_dn;
            proxy_set_header X-Ward-Request-Id \$request_id;
        }
    }"
	mb=$NGINX_MASTER
	# A, the client side. proxy_ssl_verify is off by default: an SVID names
	# its workload in a URI SAN only (no DNS SAN, no CN), which nginx cannot
	# match with proxy_ssl_name; with it on, every request is a 502
	# ("upstream SSL certificate does not match").
	nginx_start nginx-a "
    upstream orders_mesh { server 127.0.0.1:$pb; keepalive 64; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:$pa backlog=4096;
        access_log $alog;
        location / {
            proxy_pass https://orders_mesh;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host orders;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_certificate $T/id-nginx-a/svid.pem;
            proxy_ssl_certificate_key $T/id-nginx-a/key.pem;
            proxy_ssl_trusted_certificate $BUNDLE;
            proxy_ssl_verify $NGINX_VERIFY;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name orders;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }
    }"
	ma=$NGINX_MASTER
	wait_http "http://127.0.0.1:$pa/" 200 || die "nginx pair does not answer 200: $(tail -2 "$T/nginx-a/logs/error.log")"
	expect "nginx pair GET" 200 ok "http://127.0.0.1:$pa/"
	expect "nginx pair DELETE refused" 403 "" -X DELETE "http://127.0.0.1:$pa/"
	expect "nginx B without client certificate" 400 "No required SSL certificate" -k "https://127.0.0.1:$pb/"
	URL[nginx]="http://127.0.0.1:$pa/"
	PROXIES[nginx]="A=$(workers "$ma") B=$(workers "$mb") A.master=$ma B.master=$mb"
}

start_alt() { start_ward alt "$T/ward-alt" "" "" "$WARD_ALT_LOG_LEVEL"; }
start_ward-h1() { start_ward ward-h1 "$T/ward-h1"; }

# start_ward [SETUP BINARY PPROF_A PPROF_B LOG_LEVEL]
start_ward() {
	local s=${1:-ward} bin=${2:-$WARD} ppa=${3:-} ppb=${4:-} level=${5:-$WARD_LOG_LEVEL}
	local ain aup bport pa pb common
	ain=$(free_port) aup=$(free_port) bport=$(free_port)
	cat >"$T/$s-mesh.yaml" <<EOF
apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {protocol: http, endpoints: ["127.0.0.1:$bport"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: client}
spec: {protocol: http, endpoints: ["127.0.0.1:$ain"]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
    - from: [svc/client]
      methods: [GET]
      paths: ["/*"]
EOF
	common=(--server "$SERVER" --bundle "$BUNDLE" --config "$T/$s-mesh.yaml" --log-level "$level" --outbound "")
	GOMAXPROCS=1 WARD_PPROF=$ppb "${PIN_PROXY[@]}" "$bin" sidecar --service orders --listen "127.0.0.1:$bport" \
		--app "127.0.0.1:$APP_PORT" --token "$(token orders)" --data-dir "$T/$s-b" "${common[@]}" >"$T/$s-b.log" 2>&1 &
	PIDS+=($!)
	pb=$!
	GOMAXPROCS=1 WARD_PPROF=$ppa "${PIN_PROXY[@]}" "$bin" sidecar --service client --listen "127.0.0.1:$ain" \
		--app "127.0.0.1:$(free_port)" --upstream "orders=127.0.0.1:$aup" --token "$(token client)" \
		--data-dir "$T/$s-a" "${common[@]}" >"$T/$s-a.log" 2>&1 &
	PIDS+=($!)
	pa=$!
	wait_http "http://127.0.0.1:$aup/" 200 || die "ward pair does not answer 200: $(tail -2 "$T/$s-a.log") $(tail -2 "$T/$s-b.log")"
	expect "$s pair GET" 200 ok "http://127.0.0.1:$aup/"
	expect "$s pair DELETE refused" 403 '"reason":"no_rule_matches"' -X DELETE "http://127.0.0.1:$aup/"
	if curl -sk --max-time 5 -o /dev/null "https://127.0.0.1:$bport/"; then die "$s B accepted a client without certificate"; fi
	log "check ok: $s B without client certificate (handshake refused)"
	URL[$s]="http://127.0.0.1:$aup/"
	PROXIES[$s]="A=$pa B=$pb"
}

# ---------------------------------------------------------------- measuring
# Per set-up totals over the saturation rounds.
declare -A NREQ REQS TICKA TICKB TICKS WALL RPSLIST CPULIST BUSY0 BUSY0T BUSY1 BUSY1T RSSA RSSB ANONA ANONB
declare -A P50 P90 P99 P999 LATN

pids_of() { # pids_of SETUP PREFIX: the PIDs whose name starts with PREFIX
	local kv res=()
	for kv in ${PROXIES[$1]}; do [[ ${kv%%=*} == "$2"* ]] && res+=("${kv#*=}"); done
	echo "${res[@]}"
}

# warm_up SETUP OUT: WARMUP_REQS on each connection, all 2xx, and the round
# size for SAT_SECONDS from its rate. Runs are bounded by request count
# (-n), never by time (-D): at the end of a -D run h2load drops connections
# with requests in flight, and the Ward sidecar counts those cancellations
# as upstream failures (see README).
warm_up() {
	local s=$1 out=$2 n=$((CONNS * WARMUP_REQS))
	h2 -c "$CONNS" -t 1 -n "$n" "${URL[$s]}" >"$out" 2>&1 || die "$s warm-up: $(tail -3 "$out")"
	grep -q "^status codes: $n 2xx" "$out" || die "$s warm-up: not all 2xx: $(grep -E '^(requests|status)' "$out")"
	NREQ[$s]=$(awk -v d="$SAT_SECONDS" -v max="$MAX_REQS" '/^finished in/ { r = $4 + 0 }
		END { n = int(r * d); if (n < 1000) n = 1000; if (n > max) n = max; print n }' "$out")
}

saturate() { # saturate SETUP ROUND
	local s=$1 r=$2 out="$T/out-$1"
	local pa pb sampler b0 t0 b1 t1 c0 u0 c1 u1 ka0 kb0 ka1 kb1 sa0 sb0 sa1 sb1 ns0 ns1 ndone ok failed f="$out/saturation-$r.txt"
	pa=$(pids_of "$s" A) pb=$(pids_of "$s" B)
	rm -f "$out/rss-$r.stop"
	# shellcheck disable=SC2086 # NAME=PID words
	rss_sampler "$out/rss-$r" ${PROXIES[$s]} &
	sampler=$!
	PIDS+=("$sampler")
	# shellcheck disable=SC2086
	{
		read -r b0 t0 < <(core_times "$PROXY_CPU")
		read -r c0 u0 < <(core_times "$CLIENT_CPU")
		read -r ka0 sa0 < <(cpu_ticks $pa)
		read -r kb0 sb0 < <(cpu_ticks $pb)
		ns0=$(date +%s%N)
		h2 -c "$CONNS" -t 1 -n "${NREQ[$s]}" "${URL[$s]}" >"$f" 2>&1 || die "$s saturation: $(tail -3 "$f")"
		ns1=$(date +%s%N)
		read -r ka1 sa1 < <(cpu_ticks $pa)
		read -r kb1 sb1 < <(cpu_ticks $pb)
		read -r b1 t1 < <(core_times "$PROXY_CPU")
		read -r c1 u1 < <(core_times "$CLIENT_CPU")
	}
	touch "$out/rss-$r.stop"
	wait "$sampler" || true
	ndone=$(sed -n 's/^requests:.* \([0-9]*\) done.*/\1/p' "$f")
	failed=$(sed -n 's/^requests:.* \([0-9]*\) failed.*/\1/p' "$f")
	ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$f")
	[[ -n $ndone && $ndone -gt 0 && $ok == "$ndone" && $failed == 0 ]] || die "$s: $ndone done, $ok 2xx, $failed failed ($f)"
	REQS[$s]=$((${REQS[$s]:-0} + ndone))
	TICKA[$s]=$((${TICKA[$s]:-0} + ka1 - ka0)) TICKB[$s]=$((${TICKB[$s]:-0} + kb1 - kb0))
	TICKS[$s]=$((${TICKS[$s]:-0} + sa1 - sa0 + sb1 - sb0)) # system (kernel) part of A+B
	# "A+B A B" µs per request of this round
	local us
	us=$(awk -v a=$((ka1 - ka0)) -v b=$((kb1 - kb0)) -v hz="$HZ" -v n="$ndone" \
		'BEGIN { printf "%.1f:%.1f:%.1f", (a + b) * 1e6 / hz / n, a * 1e6 / hz / n, b * 1e6 / hz / n }')
	CPULIST[$s]+="$us "
	WALL[$s]=$((${WALL[$s]:-0} + (ns1 - ns0) / 1000))
	BUSY1[$s]=$((${BUSY1[$s]:-0} + b1 - b0)) BUSY1T[$s]=$((${BUSY1T[$s]:-0} + t1 - t0))
	BUSY0[$s]=$((${BUSY0[$s]:-0} + c1 - c0)) BUSY0T[$s]=$((${BUSY0T[$s]:-0} + u1 - u0))
	RPSLIST[$s]+="$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$f") "
	local k v
	while read -r k v; do
		case $k in
		A) ((v > ${RSSA[$s]:-0})) && RSSA[$s]=$v ;;
		B) ((v > ${RSSB[$s]:-0})) && RSSB[$s]=$v ;;
		A.anon) ((v > ${ANONA[$s]:-0})) && ANONA[$s]=$v ;;
		B.anon) ((v > ${ANONB[$s]:-0})) && ANONB[$s]=$v ;;
		esac
	done <"$out/rss-$r"
	printf '%s round %s: %s req/s; CPU ticks (%s/s) A %s B %s; requests %s; us/req A+B:A:B %s\n' "$s" "$r" \
		"$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$f")" "$HZ" $((ka1 - ka0)) $((kb1 - kb0)) \
		"$ndone" "$us" >>"$out/rounds.txt"
}

# census SETUP MODE: one more run, at saturation (MODE sat) or at the fixed
# rate (MODE rate), with perf counting the CPU time, system calls and
# context switches of A and B (not in the timed figures: tracing costs a
# little).
PERF_EVENTS=task-clock,raw_syscalls:sys_enter,context-switches
for e in read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait futex; do
	PERF_EVENTS+=",syscalls:sys_enter_$e"
done
declare -A SYSA SYSB
census() {
	local s=$1 mode=$2 out="$T/out-$1" side pp=() ndone per=$((RATE / LAT_CONNS)) f
	f="$out/census-$mode.txt"
	for side in A B; do
		perf stat -x, -o "$out/perf-$mode-$side.csv" -e "$PERF_EVENTS" -p "$(pids_of "$s" "$side" | tr ' ' ',')" 2>/dev/null &
		pp+=($!)
		PIDS+=($!)
	done
	sleep 0.5
	if [[ $mode == sat ]]; then
		h2 -c "$CONNS" -t 1 -n "${NREQ[$s]}" "${URL[$s]}" >"$f" 2>&1 || die "$s census: $(tail -3 "$f")"
	else
		h2 -c "$LAT_CONNS" -t 1 --rps "$per" -n $((per * LAT_CONNS * LAT_SECONDS)) "${URL[$s]}" >"$f" 2>&1 || die "$s census: $(tail -3 "$f")"
	fi
	kill -INT "${pp[@]}" 2>/dev/null || true
	wait "${pp[@]}" 2>/dev/null || true
	ndone=$(sed -n 's/^requests:.* \([0-9]*\) done.*/\1/p' "$f")
	# Per request: CPU µs, syscalls (all, recv, send, epoll, futex, other),
	# context switches. The counts cover the run and the 0.5 s before it.
	for side in A B; do
		local v
		v=$(awk -F, -v n="$ndone" '
			{ c = $1 + 0; e = $3 }
			e ~ /task-clock/ { ms += c; next }
			e ~ /raw_syscalls/ { all += c; next }
			e ~ /context-switches/ { cs += c; next }
			e ~ /_(read|readv|recvfrom|recvmsg)$/ { rd += c; next }
			e ~ /_(write|writev|sendto|sendmsg)$/ { wr += c; next }
			e ~ /_epoll_p?wait$/ { ep += c; next }
			e ~ /_futex$/ { fx += c; next }
			END { if (n > 0 && all > 0) printf "%.0f %.1f %.1f %.1f %.1f %.1f %.1f %.1f", ms * 1000 / n, all / n, rd / n, wr / n, ep / n, fx / n, (all - rd - wr - ep - fx) / n, cs / n }
		' "$out/perf-$mode-$side.csv")
		[[ -n $v ]] || { log "$s: perf counted nothing for $side (see $out/perf-$mode-$side.csv)"; continue; }
		if [[ $side == A ]]; then SYSA[$s.$mode]=$v; else SYSB[$s.$mode]=$v; fi
	done
}

latency() { # latency SETUP ROUND
	local s=$1 r=$2 out="$T/out-$1" per=$((RATE / LAT_CONNS))
	h2 -c "$LAT_CONNS" -t 1 --rps "$per" -n $((per * LAT_CONNS * LAT_SECONDS)) --log-file "$out/latency-$r.log" \
		"${URL[$s]}" >"$out/latency-$r.txt" 2>&1 || die "$s latency: $(tail -3 "$out/latency-$r.txt")"
}

# percentiles SETUP: from the pooled per-request logs (columns: start µs
# since the epoch, status, µs to the end of the response).
percentiles() {
	local s=$1 bad
	bad=$(cat "$T/out-$s"/latency-*.log | awk '$2 != 200 { n++ } END { print n + 0 }')
	((bad == 0)) || die "$s: $bad non-200 answers in the latency runs"
	read -r "P50[$s]" "P90[$s]" "P99[$s]" "P999[$s]" "LATN[$s]" < <(cat "$T/out-$s"/latency-*.log | awk '{ print $3 }' | sort -n |
		awk '{ v[NR] = $1 }
		function q(p, i) { i = int(p * NR + 0.999999); if (i < 1) i = 1; return v[i] / 1000 }
		END { printf "%.3f %.3f %.3f %.3f %d\n", q(.5), q(.9), q(.99), q(.999), NR }')
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "cores: $ncpu; h2load and app on CPU $CLIENT_CPU, proxies on CPU $PROXY_CPU; load average $LOAD_BEFORE"
for s in $SETUPS; do "start_$s"; done
for s in $SETUPS; do
	mkdir -p "$T/out-$s"
	log "$s: warm-up"
	warm_up "$s" "$T/out-$s/warmup.txt"
done
read -ra order <<<"$SETUPS"
for ((r = 1; r <= SAT_ROUNDS; r++)); do
	for ((i = 0; i < ${#order[@]}; i++)); do
		s=${order[$(((i + r - 1) % ${#order[@]}))]}
		log "saturation round $r/$SAT_ROUNDS: $s, $CONNS connections, ${NREQ[$s]} requests"
		saturate "$s" "$r"
	done
done
for ((r = 1; r <= LAT_ROUNDS; r++)); do
	log "fixed-rate round $r/$LAT_ROUNDS: $RATE req/s over $LAT_CONNS connections, ${LAT_SECONDS}s each"
	for ((i = 0; i < ${#order[@]}; i++)); do
		latency "${order[$(((i + r - 1) % ${#order[@]}))]}" "$r"
	done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
for s in $SETUPS; do percentiles "$s"; done
if ((PERF_OK)); then
	for s in $SETUPS; do
		[[ -n ${PROXIES[$s]} ]] || continue
		log "syscall census: $s at saturation and at $RATE req/s, under perf stat"
		census "$s" sat
		census "$s" rate
	done
else
	log "perf unavailable (Debian package linux-perf): no system call census"
fi

# ---------------------------------------------------------------- table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2fx", a / b }'; }
declare -A RPS CPU CPUA CPUB CPUTOT SHARE SYS
for s in $SETUPS; do
	RPS[$s]=$(median "${RPSLIST[$s]}")
	[[ -n ${PROXIES[$s]} ]] || continue
	# The round with the median A+B, and its A and B: on a shared or virtual
	# machine a round's CPU per request can swing (cache and host contention)
	# and the median is steadier than the total.
	IFS=: read -r "CPU[$s]" "CPUA[$s]" "CPUB[$s]" < <(tr ' ' '\n' <<<"${CPULIST[$s]}" | grep . | sort -t: -k1,1n |
		awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }')
	CPUTOT[$s]=$(usreq $((TICKA[$s] + TICKB[$s])) "${REQS[$s]}")
	SHARE[$s]=$(awk -v k=$((TICKA[$s] + TICKB[$s])) -v hz="$HZ" -v us="${WALL[$s]}" 'BEGIN { printf "%.0f", 100 * k / hz / (us / 1e6) }')
	if [[ -n ${SYSA[$s.sat]:-} && -n ${SYSB[$s.sat]:-} ]]; then
		a=${SYSA[$s.sat]#* } b=${SYSB[$s.sat]#* }
		SYS[$s]="${a%% *} ${b%% *}"
	fi
done
{
	echo
	echo "Mesh hop: client -HTTP/1.1-> A =mutual TLS 1.3=> B -HTTP/1.1-> app (nginx: return 200 \"ok\")"
	echo "h2load --h1. Saturation: $CONNS connections, $SAT_ROUNDS rounds of ~${SAT_SECONDS}s per set-up."
	echo "Fixed rate: $RATE req/s over $LAT_CONNS connections, $LAT_ROUNDS rounds of ${LAT_SECONDS}s per set-up, pooled."
	echo "Pinning: proxies on CPU $PROXY_CPU (ward GOMAXPROCS=1, nginx worker_processes 1), h2load + app on CPU $CLIENT_CPU; $ncpu cores; nice $NICE."
	echo "ward sidecars --log-level $WARD_LOG_LEVEL; nginx access log: $NGINX_ACCESS_LOG; nginx A proxy_ssl_verify $NGINX_VERIFY."
	echo "Mesh hop A => B: ward HTTP/2${hop_setups:+, ward-h1 HTTP/1.1 keep-alive}; nginx HTTP/1.1 keepalive."
	echo "Load average before / after: $LOAD_BEFORE / $LOAD_AFTER"
	echo
	printf '%-7s %8s %5s %5s %5s | %7s %6s %6s %8s %9s | %6s %6s %6s %6s %6s %6s | %6s %6s\n' \
		"" "req/s" "cpu0" "cpu1" "prox" "us/req" "A" "B" "cap" "syscalls" "p50" "p90" "p99" "p99.9" "+p50" "+p99" "RSS A" "RSS B"
	printf '%-7s %8s %5s %5s %5s | %7s %6s %6s %8s %9s | %6s %6s %6s %6s %6s %6s | %6s %6s\n' \
		"" "median" "%" "%" "%" "A+B" "" "" "req/s" "/req A,B" "ms" "ms" "ms" "ms" "ms" "ms" "MiB" "MiB"
	for s in $SETUPS; do
		a50=- a99=-
		if [[ $s != direct && -n ${P50[direct]:-} ]]; then
			a50=$(awk -v a="${P50[$s]}" -v b="${P50[direct]}" 'BEGIN { printf "%.2f", a - b }')
			a99=$(awk -v a="${P99[$s]}" -v b="${P99[direct]}" 'BEGIN { printf "%.2f", a - b }')
		fi
		cap=-
		[[ -n ${CPU[$s]:-} ]] && cap=$(awk -v c="${CPU[$s]}" 'BEGIN { printf "%.0f", 1e6 / c }')
		printf '%-7s %8.0f %5s %5s %5s | %7s %6s %6s %8s %9s | %6.2f %6.2f %6.2f %6.2f %6s %6s | %6s %6s\n' \
			"$s" "${RPS[$s]}" "$(pct "${BUSY0[$s]}" "${BUSY0T[$s]}")" "$(pct "${BUSY1[$s]}" "${BUSY1T[$s]}")" "${SHARE[$s]:--}" \
			"${CPU[$s]:--}" "${CPUA[$s]:--}" "${CPUB[$s]:--}" "$cap" "${SYS[$s]:-- -}" \
			"${P50[$s]}" "${P90[$s]}" "${P99[$s]}" "${P999[$s]}" "$a50" "$a99" \
			"$(mib "${RSSA[$s]:-}")" "$(mib "${RSSB[$s]:-}")"
	done
	if [[ -n ${CPU[ward]:-} && -n ${CPU[nginx]:-} ]]; then
		echo
		echo "ward / nginx"
		echo "  throughput at saturation  $(ratio "${RPS[ward]}" "${RPS[nginx]}")  (${RPS[ward]} vs ${RPS[nginx]} req/s)"
		echo "  CPU per request, A+B      $(ratio "${CPU[ward]}" "${CPU[nginx]}")  (${CPU[ward]} vs ${CPU[nginx]} us; A $(ratio "${CPUA[ward]}" "${CPUA[nginx]}"), B $(ratio "${CPUB[ward]}" "${CPUB[nginx]}"))"
		echo "    over all rounds         $(ratio "${CPUTOT[ward]}" "${CPUTOT[nginx]}")  (${CPUTOT[ward]} vs ${CPUTOT[nginx]} us)"
		echo "    of which user / kernel  ward $(usreq $((TICKA[ward] + TICKB[ward] - TICKS[ward])) "${REQS[ward]}") / $(usreq "${TICKS[ward]}" "${REQS[ward]}") us, nginx $(usreq $((TICKA[nginx] + TICKB[nginx] - TICKS[nginx])) "${REQS[nginx]}") / $(usreq "${TICKS[nginx]}" "${REQS[nginx]}") us (all rounds)"
		if [[ -n ${P50[direct]:-} ]]; then
			w=$(awk -v a="${P50[ward]}" -v b="${P50[direct]}" 'BEGIN { printf "%.3f", a - b }')
			n=$(awk -v a="${P50[nginx]}" -v b="${P50[direct]}" 'BEGIN { printf "%.3f", a - b }')
			echo "  added p50 latency         $(ratio "$w" "$n")  ($w vs $n ms)"
			w=$(awk -v a="${P99[ward]}" -v b="${P99[direct]}" 'BEGIN { printf "%.3f", a - b }')
			n=$(awk -v a="${P99[nginx]}" -v b="${P99[direct]}" 'BEGIN { printf "%.3f", a - b }')
			echo "  added p99 latency         $(ratio "$w" "$n")  ($w vs $n ms)"
		fi
		echo "  RSS A+B                   $(ratio $((RSSA[ward] + RSSB[ward])) $((RSSA[nginx] + RSSB[nginx])))  ($(mib $((RSSA[ward] + RSSB[ward]))) vs $(mib $((RSSA[nginx] + RSSB[nginx]))) MiB)"
		echo "    anonymous (RssAnon)     $(ratio $((ANONA[ward] + ANONB[ward])) $((ANONA[nginx] + ANONB[nginx])))  ($(mib $((ANONA[ward] + ANONB[ward]))) vs $(mib $((ANONA[nginx] + ANONB[nginx]))) MiB; the rest is mapped files: binary, libraries)"
	fi
	if [[ -n ${CPU[ward-h1]:-} && -n ${CPU[ward]:-} ]]; then
		echo
		echo "ward-h1 (mesh hop HTTP/1.1 keep-alive) / ward (mesh hop HTTP/2)"
		echo "  throughput at saturation  $(ratio "${RPS[ward-h1]}" "${RPS[ward]}")  (${RPS[ward-h1]} vs ${RPS[ward]} req/s)"
		echo "  CPU per request, A+B      $(ratio "${CPU[ward-h1]}" "${CPU[ward]}")  (${CPU[ward-h1]} vs ${CPU[ward]} us; A $(ratio "${CPUA[ward-h1]}" "${CPUA[ward]}"), B $(ratio "${CPUB[ward-h1]}" "${CPUB[ward]}"))"
		echo "    over all rounds         $(ratio "${CPUTOT[ward-h1]}" "${CPUTOT[ward]}")  (${CPUTOT[ward-h1]} vs ${CPUTOT[ward]} us)"
		echo "  p50, p99                  ${P50[ward-h1]} vs ${P50[ward]} ms, ${P99[ward-h1]} vs ${P99[ward]} ms"
		echo "  RSS A+B                   $(ratio $((RSSA[ward-h1] + RSSB[ward-h1])) $((RSSA[ward] + RSSB[ward])))  ($(mib $((RSSA[ward-h1] + RSSB[ward-h1]))) vs $(mib $((RSSA[ward] + RSSB[ward]))) MiB)"
	fi
	if [[ -n ${CPU[alt]:-} && -n ${CPU[ward]:-} ]]; then
		echo
		echo "alt ($WARD_ALT_SRC, --log-level $WARD_ALT_LOG_LEVEL) / ward"
		echo "  throughput at saturation  $(ratio "${RPS[alt]}" "${RPS[ward]}")  (${RPS[alt]} vs ${RPS[ward]} req/s)"
		echo "  CPU per request, A+B      $(ratio "${CPU[alt]}" "${CPU[ward]}")  (${CPU[alt]} vs ${CPU[ward]} us; A $(ratio "${CPUA[alt]}" "${CPUA[ward]}"), B $(ratio "${CPUB[alt]}" "${CPUB[ward]}"))"
		echo "    over all rounds         $(ratio "${CPUTOT[alt]}" "${CPUTOT[ward]}")  (${CPUTOT[alt]} vs ${CPUTOT[ward]} us)"
		echo "  p50, p99                  ${P50[alt]} vs ${P50[ward]} ms, ${P99[alt]} vs ${P99[ward]} ms"
	fi
	if ((${#SYSA[@]})); then
		echo
		echo "per request, perf stat over extra runs (saturation, then $RATE req/s): CPU us, system calls by kind,"
		echo "context switches"
		printf '  %-7s %-4s %-5s %6s | %6s %6s %6s %6s %6s %6s | %6s\n' "" side load "cpu us" calls recv send epoll futex other cswch
		for s in $SETUPS; do
			for mode in sat rate; do
				for side in A B; do
					v=${SYSA[$s.$mode]:-}
					[[ $side == B ]] && v=${SYSB[$s.$mode]:-}
					[[ -n $v ]] || continue
					# shellcheck disable=SC2086
					printf '  %-7s %-4s %-5s %6s | %6s %6s %6s %6s %6s %6s | %6s\n' "$s" "$side" "$mode" $v
				done
			done
		done
	fi
	echo
	echo "req/s     median of the saturation rounds; every response was a 200 (or the run stops)"
	echo "cpu0/cpu1 how busy the client+app core and the proxy core were at saturation (all processes)"
	echo "prox      CPU the proxies got, % of one core: well below cpu1, other work took the core"
	echo "us/req    CPU (user+system) of the proxies per request, A+B then A and B, of the median round"
	echo "          (nginx: the workers); all rounds in out-*/rounds.txt"
	echo "cap       1e6 / us/req: what one dedicated core would carry through the pair"
	echo "syscalls  system calls per request of A and of B (perf stat, extra run; see below)"
	echo "p50..p99  at the fixed rate, ${LATN[${order[0]}]} requests each; +p50/+p99: added to direct"
	echo "RSS       max VmRSS under saturation (nginx: the worker; masters and RssAnon in out-*/rss-*)"
	echo "raw output (h2load, per-request latency logs, proxy logs, configurations): $T"
} | tee "$T/table.txt"

# ---------------------------------------------------------------- profile
if [[ $PROFILE == 1 ]]; then
	ppa="127.0.0.1:$(free_port)" ppb="127.0.0.1:$(free_port)"
	log "profile: a second ward pair built with pprof (bench/mesh/wardprof), under saturation"
	start_ward wardprof "$T/wardprof" "$ppa" "$ppb"
	mkdir -p "$T/out-wardprof"
	warm_up wardprof "$T/out-wardprof/warmup.txt"
	NREQ[wardprof]=$((NREQ[wardprof] * 3)) # ~3 rounds' worth
	secs=$((SAT_SECONDS * 3 - 2))
	curl -s --max-time $((secs + 20)) -o "$T/profile-a.pb.gz" "http://$ppa/debug/pprof/profile?seconds=$secs" &
	ca=$!
	curl -s --max-time $((secs + 20)) -o "$T/profile-b.pb.gz" "http://$ppb/debug/pprof/profile?seconds=$secs" &
	cb=$!
	h2 -c "$CONNS" -t 1 -n "${NREQ[wardprof]}" "${URL[wardprof]}" >"$T/out-wardprof/saturation.txt" 2>&1 || true
	wait "$ca" "$cb" || true
	for side in a b; do
		for sortby in flat cum; do
			{
				echo "== sidecar ${side^^} ($([[ $side == a ]] && echo client side || echo server side)): top 15 by $sortby =="
				if [[ $sortby == cum ]]; then
					go tool pprof -top -cum -nodecount=15 "$T/wardprof" "$T/profile-$side.pb.gz" 2>/dev/null | sed -n '/^Duration/p;/flat%/,$p'
				else
					go tool pprof -top -nodecount=15 "$T/wardprof" "$T/profile-$side.pb.gz" 2>/dev/null | sed -n '/^Duration/p;/flat%/,$p'
				fi
				echo
			} | tee -a "$T/profile.txt"
		done
	done
	# Where the time goes, by layer: cumulative share of named functions.
	layers='net/http\.\(\*conn\)\.readRequest$|net/http\.\(\*ResponseController\)\.Flush$|httputil\.\(\*maxLatencyWriter\)\.delayedFlush$'
	layers+='|\(\*http2ClientConn\)\.(writeHeaders|readLoop)$|\(\*http2serverConn\)\.(serve|writeFrameAsync|Flush)$'
	layers+='|\(\*persistConn\)\.(writeLoop|readLoop)$|crypto/tls\.\(\*Conn\)\.(Read|Write)$'
	layers+='|sidecar\.\(\*resilient\)\.RoundTrip$|audit\.SlogSink\.Emit$|sidecar\.\(\*metrics\)\.observe$'
	layers+='|policy\.\(\*Engine\)\.Decide$|sidecar\.newRequestID$|identity\.\(\*Source\)\.Revoked$'
	layers+='|^runtime\.(mallocgc|gcBgMarkWorker|schedule|newstack)$'
	for side in a b; do
		{
			echo "== sidecar ${side^^}: cumulative share of named layers (they overlap) =="
			go tool pprof -top -cum -nodecount=100000 "$T/wardprof" "$T/profile-$side.pb.gz" 2>/dev/null |
				awk -v re="$layers" 'NF >= 6 { name = $6; for (i = 7; i <= NF; i++) name = name " " $i; if (name ~ re) printf "  %7s %7s  %s\n", $4, $5, name }'
			echo
		} | tee -a "$T/profile.txt"
	done
	echo "profiles: $T/profile-{a,b}.pb.gz; go tool pprof -http=127.0.0.1:0 $T/wardprof $T/profile-b.pb.gz"
fi
