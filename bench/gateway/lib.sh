# shellcheck shell=bash disable=SC2034 # variables for the sourcing script
# bench/gateway/lib.sh: shell helpers of the side-by-side proxy benchmarks,
# sourced by bench/gateway/run.sh and bench/mesh/run.sh. Nothing here runs
# on its own: every function expects the caller's set -euo pipefail, and
# bench_init sets up the workspace $T, the PIDS stopped on exit and the hard
# time limit.

# Progress goes to the script's own stderr (fd 3), even from a trap that
# fires inside a redirected command.
exec 3>&2
log() { printf '%s %s\n' "$(date +%T)" "$*" >&3; }
die() {
	log "FAIL: $*"
	exit 1
}

# install_missing PACKAGE...: apt-get install them (after an update if the
# first try fails), without starting any Debian service they bring
# (invoke-rc.d asks policy-rc.d).
install_missing() {
	(($#)) || return 0
	log "installing $*"
	local made_policy=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
	if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi
}

# perf_ready: PERF_OK=1 when perf (Debian linux-perf, installed if missing;
# optional) can count system calls.
perf_ready() {
	if ! command -v perf >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 || true
	fi
	PERF_OK=0
	if command -v perf >/dev/null && perf stat -x, -o /dev/null -e raw_syscalls:sys_enter true 2>/dev/null; then PERF_OK=1; fi
}

# bench_init PREFIX: the workspace T (BENCH_DIR or a new temp dir), PIDS
# (stopped on exit: TERM, then KILL after 3 s), the MAX_SECONDS watchdog,
# CPU pinning (CLIENT_CPU, PROXY_CPU, PIN_CLIENT, PIN_PROXY) and HZ.
bench_init() {
	T=${BENCH_DIR:-$(mktemp -d -t "$1.XXXXXX")}
	mkdir -p "$T"
	T=$(cd "$T" && pwd -P)
	PIDS=()
	WATCHDOG=
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'log "time limit (${MAX_SECONDS}s) or signal: stopping"; exit 124' TERM
	# A hard bound on the whole run, in one-second sleeps so that nothing lingers.
	(
		for ((i = 0; i < MAX_SECONDS; i++)); do sleep 1; done
		kill -TERM $$ 2>/dev/null
	) &
	WATCHDOG=$!
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
	# SIDECAR_CPU pins Ward's sidecars elsewhere (e.g. 0, beside the app, as
	# on a host of its own); by default they share the proxies' CPU.
	PIN_SIDECAR=(nice -n "$NICE" taskset -c "${SIDECAR_CPU:-$PROXY_CPU}")
	HZ=$(getconf CLK_TCK)
}

bench_cleanup() {
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

# pin_self: from here on this script and what it starts run on the client
# CPU, except what is started with PIN_PROXY.
pin_self() {
	taskset -p -c "$CLIENT_CPU" $$ >/dev/null
	renice -n "$NICE" -p $$ >/dev/null
}

USED_PORTS=" "
free_port() {
	local p busy
	busy=" $(ss -Htln 2>/dev/null | awk '{ n = split($4, a, ":"); printf "%s ", a[n] }')"
	while :; do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range
		[[ $busy == *" $p "* || $USED_PORTS == *" $p "* ]] && continue
		USED_PORTS+="$p "
		echo "$p"
		return
	done
}

# wait_http URL STATUS [curl-args...]: until URL answers STATUS, 20 s at most.
wait_http() {
	local url=$1 want=$2 code
	shift 2
	for _ in $(seq 100); do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" || true)
		[[ $code == "$want" ]] && return 0
		sleep 0.2
	done
	return 1
}

# expect WHAT STATUS BODY_PART curl-args...: one request, checked.
expect() {
	local what=$1 want=$2 body=$3 out code
	shift 3
	out=$(curl -s --max-time 5 -w '\n%{http_code}' "$@" || true)
	code=${out##*$'\n'}
	out=${out%$'\n'*}
	[[ $code == "$want" && $out == *"$body"* ]] || die "$what: want $want with \"$body\", got $code \"$out\""
	log "check ok: $what ($code)"
}

# cpu_ticks PID...: "utime+stime stime" of the processes (all threads).
cpu_ticks() {
	local sum=0 sys=0 p line fields
	for p in "$@"; do
		read -r line <"/proc/$p/stat" || continue
		line=${line##*) }
		read -ra fields <<<"$line"
		sum=$((sum + fields[11] + fields[12])) sys=$((sys + fields[12]))
	done
	echo "$sum $sys"
}

# core_times CPU: "busy total" jiffies of one core (/proc/stat).
core_times() {
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# rss_sampler OUT NAME=PID...: max VmRSS (kB) per name, and max RssAnon as
# NAME.anon, every 0.2 s until OUT.stop exists.
rss_sampler() {
	local out=$1 kv name pid k v
	shift
	local -A max=()
	while [[ ! -e $out.stop ]]; do
		for kv in "$@"; do
			name=${kv%%=*} pid=${kv#*=}
			while read -r k v _; do
				case $k in
				VmRSS:) ((v > ${max[$name]:-0})) && max[$name]=$v ;;
				RssAnon:)
					((v > ${max[$name.anon]:-0})) && max[$name.anon]=$v
					break
					;;
				esac
			done <"/proc/$pid/status" 2>/dev/null || true
		done
		sleep 0.2
	done
	for name in "${!max[@]}"; do echo "$name ${max[$name]}"; done >"$out"
}

# nginx_start NAME CPU BODY: an nginx of its own (prefix, pid, logs in
# $T/NAME), one worker, pinned to CPU; NGINX_MASTER is its master's PID.
nginx_start() {
	local name=$1 cpu=$2 body=$3 d="$T/$1"
	mkdir -p "$d/logs" "$d/tmp"
	cat >"$d/nginx.conf" <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 8192; }
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
	nice -n "$NICE" taskset -c "$cpu" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" -g 'daemon off;' >"$d/logs/stdout" 2>&1 &
	PIDS+=($!)
	NGINX_MASTER=$!
}

# workers PID: the worker processes of an nginx master.
workers() { pgrep -P "$1" | tr '\n' ' ' | sed 's/ *$//'; }

# Table arithmetic.
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b ? 100 * a / b : 0 }'; }
mib() { if [[ -n $1 ]]; then awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; else echo -; fi; }
usreq() { awk -v k="$1" -v hz="$HZ" -v n="$2" 'BEGIN { printf "%.1f", k * 1e6 / hz / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "" || a == "-") print "-"; else printf "%.2fx", a / b }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

# latency_percentiles LOG...: "p50 p90 p99 p99.9 count" in ms from h2load
# per-request logs (columns: start µs since the epoch, status, µs to the
# end of the response); dies on any answer but 200.
latency_percentiles() {
	local bad
	bad=$(cat "$@" | awk '$2 != 200 { n++ } END { print n + 0 }')
	((bad == 0)) || die "$bad non-200 answers in $*"
	cat "$@" | awk '{ print $3 }' | sort -n |
		awk '{ v[NR] = $1 }
		function q(p, i) { i = int(p * NR + 0.999999); if (i < 1) i = 1; return v[i] / 1000 }
		END { printf "%.3f %.3f %.3f %.3f %d\n", q(.5), q(.9), q(.99), q(.999), NR }'
}

# alternate ROUNDS FUNC WHAT SETUP...: ROUNDS rounds of FUNC SETUP ROUND over
# every set-up, the order rotating each round, so that other work on the
# machine weighs on each set-up alike.
alternate() {
	local rounds=$1 fn=$2 what=$3 r i s
	shift 3
	local order=("$@")
	for ((r = 1; r <= rounds; r++)); do
		for ((i = 0; i < ${#order[@]}; i++)); do
			s=${order[$(((i + r - 1) % ${#order[@]}))]}
			log "$what: round $r/$rounds: $s"
			"$fn" "$s" "$r"
		done
	done
}
