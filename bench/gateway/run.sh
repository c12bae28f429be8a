#!/usr/bin/env bash
# bench/gateway/run.sh: the edge job (TLS 1.3 termination, HTTP/2 to the
# client, proxying to one upstream) done by Ward's gateway side by side with
# nginx, HAProxy, Caddy and no proxy at all, in one run.
#
#   h2load ══ TLS 1.3, h2 ══▶ proxy ──▶ app                 (peers)
#   h2load ══ TLS 1.3, h2 ══▶ ward gateway ══ mTLS h2 ══▶ ward sidecar ──▶ app
#
#   direct   h2load → the app's own TLS h2 listener (no proxy)
#   nginx    listen ssl http2, proxy_pass http://, keepalive pool
#   haproxy  bind ssl alpn h2, server plain, http-reuse always
#   caddy    tls, reverse_proxy to the app
#   ward-a   ward gateway: Route auth {apiKey: none, user: anonymous}, no
#            rate limit → Service app = a ward sidecar → the app
#   ward-b   the same with apiKey required + a JWT (ES256, bench/gateway/idp)
#            + rateLimit apikey+user (1e6/s, never limits) + the access
#            records (decision and outcome) in the audit spool, fsynced at
#            most 1s apart (--audit-sync-interval 1s, the default)
#   ward-bs  ward-b with --audit-sync-interval always on gateway and
#            sidecar: every record fsynced before the request goes on
#   app      an nginx: return 200 "ok", plain HTTP/1.1 for the proxies and
#            TLS 1.3 + h2 for direct, the same worker for every set-up
#
# Every TLS listener has the same ECDSA P-256 certificate. Measured per
# set-up: requests/s at saturation, CPU µs per request of the edge process
# (and, for Ward, of the sidecar behind it), p50/p99 at a fixed rate and
# what the proxy adds over direct, max VmRSS under load and with 1,000 idle
# client connections open. Proxies on CPU 1 (GOMAXPROCS=1, worker_processes
# 1, nbthread 1), h2load, the app and everything else on CPU 0. All set-ups
# run at once and are measured in alternating rounds. Everything listens on
# 127.0.0.1; see README.md.
#
# Environment (defaults in brackets):
#   SAT_ROUNDS [5] x SAT_SECONDS [3]   saturation rounds per set-up
#   CONNS [64]                         connections at saturation (1 stream each)
#   LAT_ROUNDS [4] x LAT_SECONDS [2]   fixed-rate rounds per set-up
#   RATE [1000], LAT_CONNS [10]        the fixed rate, over that many connections
#   IDLE_CONNS [1000]                  idle client connections for the RSS figure
#   SETUPS ["direct nginx haproxy caddy ward-a ward-b ward-bs", plus ward-h1 with
#                       WARD_HOPS "h2 h1"]
#   EDGE_PROTO [h2]     what h2load speaks to every set-up over TLS 1.3: h2,
#                       or h1 (h2load --h1, HTTP/1.1 keep-alive)
#   WARD_HOPS [h2]      "h2 h1" also builds ward-h1 (go build -ldflags -X
#                       .../internal/mesh.hop=h1: HTTP/1.1 keep-alive on the
#                       mesh hop for HTTP/1.x callers; Ward as built uses
#                       HTTP/2) and measures its gateway as set-up ward-h1,
#                       otherwise like ward-a. It differs from ward-a only
#                       with EDGE_PROTO=h1 (HTTP/2 callers get HTTP/2 from
#                       both)
#   PROFILE [0]         1: then profile a ward-b gateway under saturation
#                       (pprof build: bench/mesh/wardprof), top 15 flat and cum
#   WARD_LOG_LEVEL [info]  --log-level of ward-b's gateway (info: one access
#                       record per request; warn: none). ward-a and the
#                       sidecars run at warn: no per-request line
#   STAGES [1]          1: then print the per-stage cost of the gateway's and
#                       the sidecar's pipelines (BenchmarkStages, in process:
#                       CPU ns and allocations each stage adds)
#   NICE [0]            niceness of every benchmark process
#   SIDECAR_CPU [the proxies' CPU]  where Ward's sidecars run: 0 puts them
#                       beside h2load and the app, as if on a host of their
#                       own, so gateway and sidecar stop taking turns on one
#                       core (compare the added latency with and without)
#   WARD_SRC [this checkout]  the Ward source tree to build ward from (a
#                       clean export of a commit when the working tree is
#                       busy: git archive HEAD | tar -x -C DIR)
#   BENCH_DIR           keep everything there instead of a new temp dir
#   MAX_SECONDS [480]   hard limit for the whole script
set -euo pipefail

SAT_ROUNDS=${SAT_ROUNDS:-5}
SAT_SECONDS=${SAT_SECONDS:-3}
CONNS=${CONNS:-64}
LAT_ROUNDS=${LAT_ROUNDS:-4}
LAT_SECONDS=${LAT_SECONDS:-2}
RATE=${RATE:-1000}
LAT_CONNS=${LAT_CONNS:-10}
IDLE_CONNS=${IDLE_CONNS:-1000}
WARD_HOPS=${WARD_HOPS:-h2}
case " $WARD_HOPS " in
" h2 ") SETUPS=${SETUPS:-direct nginx haproxy caddy ward-a ward-b ward-bs} ;;
" h2 h1 " | " h1 h2 ") SETUPS=${SETUPS:-direct nginx haproxy caddy ward-a ward-h1 ward-b ward-bs} ;;
*) echo "WARD_HOPS must be \"h2\" or \"h2 h1\", not \"$WARD_HOPS\"" >&2; exit 2 ;;
esac
EDGE_PROTO=${EDGE_PROTO:-h2}
case $EDGE_PROTO in
h2) EDGE_ARGS=() EDGE_ALPN=h2 ;;
h1) EDGE_ARGS=(--h1) EDGE_ALPN=http/1.1 ;;
*) echo "EDGE_PROTO must be h2 or h1, not \"$EDGE_PROTO\"" >&2; exit 2 ;;
esac
PROFILE=${PROFILE:-0}
WARD_LOG_LEVEL=${WARD_LOG_LEVEL:-info}
NICE=${NICE:-0}
MAX_SECONDS=${MAX_SECONDS:-480}
WARMUP_REQS=300  # per connection
MAX_REQS=2000000 # per saturation round
TD=example.org

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root"
export PATH="/usr/local/go/bin:$PATH"
if [[ "${GOFLAGS:-}" != *-buildvcs* ]]; then
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
fi
# shellcheck source=bench/gateway/lib.sh
source "$root/bench/gateway/lib.sh"

# ---------------------------------------------------------------- packages
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
[[ " $SETUPS " != *" haproxy "* ]] || command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
[[ " $SETUPS " != *" caddy "* ]] || command -v caddy >/dev/null || need+=(caddy)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
install_missing "${need[@]}"
perf_ready
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

# ---------------------------------------------------------------- workspace
bench_init ward-bench-gateway
# IDLE_CONNS client connections and as many upstream ones need descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log "building ward (from ${WARD_SRC:-$root}), idp, holdconns"
WARD_SRC=$(cd "${WARD_SRC:-$root}" && pwd -P)
(cd "$WARD_SRC" && go build -o "$T/ward" ./cmd/ward) || die "ward does not build from $WARD_SRC"
if [[ $PROFILE == 1 ]]; then (cd "$WARD_SRC" && go build -o "$T/wardprof" ./bench/mesh/wardprof) || die "no wardprof in $WARD_SRC"; fi
if [[ " $SETUPS " == *" ward-h1 "* ]]; then
	(cd "$WARD_SRC" && go build -ldflags "-X github.com/wardsec/ward/internal/mesh.hop=h1" -o "$T/ward-h1" ./cmd/ward) ||
		die "ward-h1 does not build from $WARD_SRC"
fi
go build -o "$T/idp" ./bench/gateway/idp
go build -o "$T/holdconns" ./bench/gateway/holdconns
pin_self

# h2 ARGS: h2load (HTTP/2 over TLS for https:// URLs), one thread, bounded,
# in the background so that the time limit can interrupt the wait and the
# trap can stop it.
h2() {
	timeout 120 h2load -t 1 "$@" &
	local p=$!
	PIDS+=("$p")
	wait "$p"
}

# The edge certificate of every set-up: ECDSA P-256, self-signed, for
# localhost and 127.0.0.1 (h2load does not verify it; curl gets -k).
CERT="$T/edge-cert.pem" KEY="$T/edge-key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$KEY" -out "$CERT" -days 2 \
	-subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null || die "openssl: no certificate"
cat "$CERT" "$KEY" >"$T/edge-combined.pem" # haproxy's crt

# ---------------------------------------------------------------- the app
declare -A URL PROXIES HDRS
APP_PORT=$(free_port) APP_TLS_PORT=$(free_port)
nginx_start app "$CLIENT_CPU" "
    server {
        listen 127.0.0.1:$APP_PORT backlog=4096;
        location / { default_type text/plain; return 200 \"ok\"; }
    }
    server {
        listen 127.0.0.1:$APP_TLS_PORT ssl http2 backlog=4096;
        ssl_protocols TLSv1.3;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        location / { default_type text/plain; return 200 \"ok\"; }
    }"
wait_http "http://127.0.0.1:$APP_PORT/" 200 || die "the app did not start"

# ---------------------------------------------------------------- set-ups
# start_SETUP sets URL[SETUP] (what h2load calls), HDRS[SETUP] (extra -H
# arguments, one per line) and PROXIES[SETUP] (NAME=PID of the measured
# processes: G the edge proxy, S Ward's sidecar; extras have a dot in NAME).

# peer_ready SETUP PORT LOG: the peer answers 200 over TLS and h2; its URL.
peer_ready() {
	URL[$1]="https://127.0.0.1:$2/"
	wait_http "${URL[$1]}" 200 -k || die "$1 does not answer 200: $(tail -3 "$3")"
	expect "$1 over TLS and h2" 200 ok -k --http2 "${URL[$1]}"
}

start_direct() {
	URL[direct]="https://127.0.0.1:$APP_TLS_PORT/"
	PROXIES[direct]=""
	expect "direct over TLS and h2" 200 ok -k --http2 "${URL[direct]}"
}

start_nginx() {
	local p
	p=$(free_port)
	nginx_start nginx "$PROXY_CPU" "
    upstream app { server 127.0.0.1:$APP_PORT; keepalive 64; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:$p ssl http2 backlog=4096;
        ssl_protocols TLSv1.3;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
	peer_ready nginx "$p" "$T/nginx/logs/error.log"
	PROXIES[nginx]="G=$(workers "$NGINX_MASTER") G.master=$NGINX_MASTER"
}

start_haproxy() {
	local p d="$T/haproxy"
	p=$(free_port)
	mkdir -p "$d"
	cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 5000
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
frontend edge
    bind 127.0.0.1:$p ssl crt $T/edge-combined.pem alpn h2,http/1.1
    default_backend app
backend app
    http-reuse always
    server app 127.0.0.1:$APP_PORT maxconn 1000
EOF
	"$HAPROXY" -c -q -f "$d/haproxy.cfg" || die "haproxy: bad configuration"
	"${PIN_PROXY[@]}" "$HAPROXY" -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 &
	PIDS+=($!)
	local pid=$!
	peer_ready haproxy "$p" "$d/haproxy.log"
	PROXIES[haproxy]="G=$pid"
}

start_caddy() {
	local p d="$T/caddy"
	p=$(free_port)
	mkdir -p "$d"
	cat >"$d/Caddyfile" <<EOF
{
    admin off
    auto_https off
    storage file_system $d/storage
    servers {
        protocols h1 h2
    }
}
https://127.0.0.1:$p {
    bind 127.0.0.1
    tls $CERT $KEY {
        protocols tls1.3
    }
    reverse_proxy 127.0.0.1:$APP_PORT {
        transport http {
            keepalive 120s
            keepalive_idle_conns_per_host 128
        }
    }
}
EOF
	HOME=$d XDG_DATA_HOME=$d XDG_CONFIG_HOME=$d GOMAXPROCS=1 "${PIN_PROXY[@]}" caddy run --config "$d/Caddyfile" --adapter caddyfile >"$d/caddy.log" 2>&1 &
	PIDS+=($!)
	local pid=$!
	peer_ready caddy "$p" "$d/caddy.log"
	PROXIES[caddy]="G=$pid"
}

# Ward: one server (CA, API keys) and one identity provider for both
# set-ups; each set-up has its own gateway and sidecar, so that the CPU of
# each is its own.
WARD="$T/ward"
DATA="$T/ward-data"
ward_server() {
	[[ -z ${SERVER:-} ]] || return 0
	"${PIN_CLIENT[@]}" "$WARD" server --data-dir "$DATA" --trust-domain "$TD" \
		--listen "127.0.0.1:$(free_port)" --public-listen "127.0.0.1:$(free_port)" >"$T/ward-server.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 150); do [[ -f $DATA/client.json ]] && break; sleep 0.2; done
	[[ -f $DATA/client.json ]] || die "ward server did not start: $(tail -5 "$T/ward-server.log")"
	SERVER=$(sed -n 's/.*"server": *"\([^"]*\)".*/\1/p' "$DATA/client.json")
	BUNDLE="$DATA/bundle.pem"
	log "ward server at $SERVER"
	# The identity provider of ward-b's users.
	"${PIN_CLIENT[@]}" "$T/idp" -listen "127.0.0.1:$(free_port)" -aud ward-bench >"$T/idp.out" 2>"$T/idp.log" &
	PIDS+=($!)
	for _ in $(seq 50); do grep -q '^token ' "$T/idp.out" 2>/dev/null && break; sleep 0.1; done
	ISSUER=$(sed -n 's/^issuer //p' "$T/idp.out")
	JWT=$(sed -n 's/^token //p' "$T/idp.out")
	[[ -n $ISSUER && -n $JWT ]] || die "idp did not start: $(cat "$T/idp.log")"
}
token() { "$WARD" token create --id "spiffe://$TD/$1" --data-dir "$DATA" 2>/dev/null | head -1; }

# start_ward SETUP BINARY [PPROF SIDECAR_ADDR]: a gateway and its sidecar.
# With SIDECAR_ADDR, only a gateway (of ward-b's kind) in front of that
# sidecar: the profiling run.
start_ward() {
	local s=$1 bin=$2 pprof=${3:-} sidecar=${4:-} kind=a level=warn gport name gpid spid="" sync=1s
	[[ $s == ward-b || $s == ward-bs || -n $sidecar ]] && kind=b level=$WARD_LOG_LEVEL
	[[ $s == ward-bs ]] && sync=always
	ward_server
	gport=$(free_port)
	[[ -n $sidecar ]] || sidecar="127.0.0.1:$(free_port)"
	name=${s//[^a-z0-9]/}
	{
		cat <<EOF
apiVersion: ward/v1
kind: Service
metadata: {name: app}
spec: {protocol: http, endpoints: ["$sidecar"]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: app-callers}
spec:
  target: app
  rules:
    - from: [gateway/*]
      methods: [GET]
      paths: ["/*"]
---
apiVersion: ward/v1
kind: Route
metadata: {name: bench-$kind}
spec:
  pathPrefix: /
  service: app
EOF
		if [[ $kind == a ]]; then
			echo "  auth: {apiKey: none, user: anonymous}"
		else
			cat <<EOF
  auth: {apiKey: required, user: jwt, issuers: [bench]}
  rateLimit: {key: apikey+user, rate: 1000000/s, burst: 1000000}
---
apiVersion: ward/v1
kind: Issuer
metadata: {name: bench}
spec: {issuerURL: "$ISSUER", audiences: [ward-bench], algorithms: [ES256]}
EOF
		fi
	} >"$T/$s.yaml"
	HDRS[$s]=""
	if [[ $kind == b ]]; then
		if [[ -z ${APIKEY:-} ]]; then
			APIKEY=$("$WARD" apikey create --app bench --routes bench-b --data-dir "$DATA" 2>>"$T/apikey.log") ||
				die "apikey create: $(cat "$T/apikey.log")"
		fi
		HDRS[$s]="x-api-key: $APIKEY"$'\n'"authorization: Bearer $JWT"
	fi
	if [[ -z ${4:-} ]]; then
		GOMAXPROCS=1 "${PIN_SIDECAR[@]}" "$WARD" sidecar --service app --listen "$sidecar" --app "127.0.0.1:$APP_PORT" \
			--outbound "" --config "$T/$s.yaml" --token "$(token svc/app)" --data-dir "$T/$s-sidecar" \
			--server "$SERVER" --bundle "$BUNDLE" --log-level warn --audit-sync-interval "$sync" >"$T/$s-sidecar.log" 2>&1 &
		PIDS+=($!)
		spid=$!
	fi
	GOMAXPROCS=1 WARD_PPROF=$pprof "${PIN_PROXY[@]}" "$bin" gateway --name "$name" --listen "127.0.0.1:$gport" \
		--config "$T/$s.yaml" --tls-cert "$CERT" --tls-key "$KEY" --token "$(token "gateway/$name")" \
		--data-dir "$T/$s-gateway" --server "$SERVER" --bundle "$BUNDLE" --log-level "$level" --audit-sync-interval "$sync" >"$T/$s-gateway.log" 2>&1 &
	PIDS+=($!)
	gpid=$!
	URL[$s]="https://127.0.0.1:$gport/"
	local hdr=()
	if [[ $kind == b ]]; then hdr=(-H "X-Api-Key: $APIKEY" -H "Authorization: Bearer $JWT"); fi
	wait_http "${URL[$s]}" 200 -k "${hdr[@]}" ||
		die "$s does not answer 200: $(tail -3 "$T/$s-gateway.log") $(tail -3 "$T/$s-sidecar.log" 2>/dev/null)"
	expect "$s over TLS and h2" 200 ok -k --http2 "${hdr[@]}" "${URL[$s]}"
	if [[ $kind == b ]]; then
		expect "$s without an API key" 401 apikey_missing -k --http2 -H "Authorization: Bearer $JWT" "${URL[$s]}"
		expect "$s without a JWT" 401 jwt_missing -k --http2 -H "X-Api-Key: $APIKEY" "${URL[$s]}"
	fi
	PROXIES[$s]="G=$gpid${spid:+ S=$spid}"
}
start_ward-a() { start_ward ward-a "$WARD"; }
start_ward-h1() { start_ward ward-h1 "$T/ward-h1"; }
start_ward-b() { start_ward ward-b "$WARD"; }
start_ward-bs() { start_ward ward-bs "$WARD"; }

# ---------------------------------------------------------------- measuring
declare -A NREQ REQS TICKG TICKS TICKK WALL RPSLIST CPULIST BUSY0 BUSY0T BUSY1 BUSY1T RSSG RSSS ANONG IDLEG IDLES TLSINFO
declare -A P50 P90 P99 P999 LATN

pids_of() { # pids_of SETUP PREFIX: the PIDs whose name is PREFIX
	local kv res=()
	for kv in ${PROXIES[$1]}; do [[ ${kv%%=*} == "$2" ]] && res+=("${kv#*=}"); done
	echo "${res[@]}"
}

# hload SETUP ARGS...: h2load with the set-up's headers and URL.
hload() {
	local s=$1 args=() line
	shift
	while IFS= read -r line; do [[ -n $line ]] && args+=(-H "$line"); done <<<"${HDRS[$s]:-}"
	h2 "${EDGE_ARGS[@]}" "$@" "${args[@]}" "${URL[$s]}"
}

# warm_up SETUP OUT: WARMUP_REQS on each connection, all 2xx, TLS 1.3 and
# EDGE_PROTO, and the round size for SAT_SECONDS from its rate. Runs are bounded by
# request count (-n), never by time (-D): at the end of a -D run h2load
# drops requests in flight, which Ward's mesh client may count as upstream
# failures (see bench/mesh/README.md).
warm_up() {
	local s=$1 out=$2 n=$((CONNS * WARMUP_REQS))
	hload "$s" -c "$CONNS" -n "$n" >"$out" 2>&1 || die "$s warm-up: $(tail -3 "$out")"
	grep -q "^status codes: $n 2xx" "$out" || die "$s warm-up: not all 2xx: $(grep -E '^(requests|status)' "$out")"
	grep -q '^TLS Protocol: TLSv1.3' "$out" || die "$s warm-up: not TLS 1.3: $(grep -E '^(TLS|Cipher)' "$out")"
	grep -q "^Application protocol: $EDGE_ALPN" "$out" || die "$s warm-up: not $EDGE_ALPN: $(grep '^Application protocol' "$out")"
	TLSINFO[$s]="$(sed -n 's/^Cipher: //p' "$out"), $(sed -n 's/^Server Temp Key: //p' "$out")"
	NREQ[$s]=$(awk -v d="$SAT_SECONDS" -v max="$MAX_REQS" '/^finished in/ { r = $4 + 0 }
		END { n = int(r * d); if (n < 1000) n = 1000; if (n > max) n = max; print n }' "$out")
}

saturate() { # saturate SETUP ROUND
	local s=$1 r=$2 out="$T/out-$1"
	local pg ps sampler b0 t0 b1 t1 c0 u0 c1 u1 kg0 ks0 kg1 ks1 sg0 ss0 sg1 ss1 ns0 ns1 ndone ok failed f="$out/saturation-$r.txt"
	pg=$(pids_of "$s" G) ps=$(pids_of "$s" S)
	rm -f "$out/rss-$r.stop"
	# shellcheck disable=SC2086 # NAME=PID words
	rss_sampler "$out/rss-$r" ${PROXIES[$s]} &
	sampler=$!
	PIDS+=("$sampler")
	# shellcheck disable=SC2086
	{
		read -r b0 t0 < <(core_times "$PROXY_CPU")
		read -r c0 u0 < <(core_times "$CLIENT_CPU")
		read -r kg0 sg0 < <(cpu_ticks $pg)
		read -r ks0 ss0 < <(cpu_ticks $ps)
		ns0=$(date +%s%N)
		hload "$s" -c "$CONNS" -n "${NREQ[$s]}" >"$f" 2>&1 || die "$s saturation: $(tail -3 "$f")"
		ns1=$(date +%s%N)
		read -r kg1 sg1 < <(cpu_ticks $pg)
		read -r ks1 ss1 < <(cpu_ticks $ps)
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
	TICKG[$s]=$((${TICKG[$s]:-0} + kg1 - kg0)) TICKS[$s]=$((${TICKS[$s]:-0} + ks1 - ks0))
	TICKK[$s]=$((${TICKK[$s]:-0} + sg1 - sg0 + ss1 - ss0)) # kernel part of G+S
	# "G+S G S" µs per request of this round
	local us
	us=$(awk -v g=$((kg1 - kg0)) -v sc=$((ks1 - ks0)) -v hz="$HZ" -v n="$ndone" \
		'BEGIN { printf "%.1f:%.1f:%.1f", (g + sc) * 1e6 / hz / n, g * 1e6 / hz / n, sc * 1e6 / hz / n }')
	CPULIST[$s]+="$us "
	WALL[$s]=$((${WALL[$s]:-0} + (ns1 - ns0) / 1000))
	BUSY1[$s]=$((${BUSY1[$s]:-0} + b1 - b0)) BUSY1T[$s]=$((${BUSY1T[$s]:-0} + t1 - t0))
	BUSY0[$s]=$((${BUSY0[$s]:-0} + c1 - c0)) BUSY0T[$s]=$((${BUSY0T[$s]:-0} + u1 - u0))
	RPSLIST[$s]+="$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$f") "
	local k v
	while read -r k v; do
		case $k in
		G) ((v > ${RSSG[$s]:-0})) && RSSG[$s]=$v ;;
		S) ((v > ${RSSS[$s]:-0})) && RSSS[$s]=$v ;;
		G.anon) ((v > ${ANONG[$s]:-0})) && ANONG[$s]=$v ;;
		esac
	done <"$out/rss-$r"
	printf '%s round %s: %s req/s; CPU ticks (%s/s) G %s S %s; requests %s; us/req G+S:G:S %s\n' "$s" "$r" \
		"$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$f")" "$HZ" $((kg1 - kg0)) $((ks1 - ks0)) \
		"$ndone" "$us" >>"$out/rounds.txt"
}

latency() { # latency SETUP ROUND
	local s=$1 r=$2 out="$T/out-$1" per=$((RATE / LAT_CONNS))
	hload "$s" -c "$LAT_CONNS" --rps "$per" -n $((per * LAT_CONNS * LAT_SECONDS)) --log-file "$out/latency-$r.log" \
		>"$out/latency-$r.txt" 2>&1 || die "$s latency: $(tail -3 "$out/latency-$r.txt")"
}

# idle_rss SETUP: open IDLE_CONNS client connections (one GET each, then
# idle) and read the proxies' VmRSS while they are open.
idle_rss() {
	local s=$1 out="$T/out-$1" hp line args=() kv name pid v
	while IFS= read -r line; do [[ -n $line ]] && args+=(-H "$line"); done <<<"${HDRS[$s]:-}"
	"${PIN_CLIENT[@]}" "$T/holdconns" -url "${URL[$s]}" -n "$IDLE_CONNS" -hold 60s "${args[@]}" >"$out/idle.txt" 2>&1 &
	hp=$!
	PIDS+=("$hp")
	for _ in $(seq 300); do
		grep -q '^open ' "$out/idle.txt" && break
		kill -0 "$hp" 2>/dev/null || die "$s: holdconns: $(cat "$out/idle.txt")"
		sleep 0.1
	done
	grep -q '^open ' "$out/idle.txt" || die "$s: $IDLE_CONNS connections not open in 30 s"
	sleep 1 # let the proxies settle (Go: buffers of finished requests)
	for kv in ${PROXIES[$s]}; do
		name=${kv%%=*} pid=${kv#*=}
		v=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
		echo "$name $v" >>"$out/idle-rss.txt"
		case $name in
		G) IDLEG[$s]=$v ;;
		S) IDLES[$s]=$v ;;
		esac
	done
	kill -TERM "$hp" 2>/dev/null || true
	wait "$hp" 2>/dev/null || true
	log "$s: $(head -1 "$out/idle.txt"); VmRSS G $(mib "${IDLEG[$s]}") MiB${IDLES[$s]:+, S $(mib "${IDLES[$s]}") MiB}"
}

# census SETUP: one more saturation run with perf counting the CPU time,
# system calls by kind and context switches of G and of S (not in the timed
# figures: tracing costs a little). SYSC[SETUP.G] = "cpu-us calls recv send
# epoll futex other cswch", per request.
PERF_EVENTS=task-clock,raw_syscalls:sys_enter,context-switches
for e in read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait futex; do
	PERF_EVENTS+=",syscalls:sys_enter_$e"
done
declare -A SYSC
census() {
	local s=$1 out="$T/out-$1" side pp=() sides=() ndone f v
	f="$out/census.txt"
	for side in G S; do
		[[ -n $(pids_of "$s" "$side") ]] || continue
		sides+=("$side")
		perf stat -x, -o "$out/perf-$side.csv" -e "$PERF_EVENTS" -p "$(pids_of "$s" "$side" | tr ' ' ',')" 2>/dev/null &
		pp+=($!)
		PIDS+=($!)
	done
	sleep 0.5
	hload "$s" -c "$CONNS" -n "${NREQ[$s]}" >"$f" 2>&1 || die "$s census: $(tail -3 "$f")"
	kill -INT "${pp[@]}" 2>/dev/null || true
	wait "${pp[@]}" 2>/dev/null || true
	ndone=$(sed -n 's/^requests:.* \([0-9]*\) done.*/\1/p' "$f")
	for side in "${sides[@]}"; do
		v=$(awk -F, -v n="$ndone" '
			{ c = $1 + 0; e = $3 }
			e ~ /task-clock/ { ms += c; next }
			e ~ /raw_syscalls/ { all += c; next }
			e ~ /context-switches/ { cs += c; next }
			e ~ /_(read|readv|recvfrom|recvmsg)$/ { rd += c; next }
			e ~ /_(write|writev|sendto|sendmsg)$/ { wr += c; next }
			e ~ /_epoll_p?wait$/ { ep += c; next }
			e ~ /_futex$/ { fx += c; next }
			END { if (n > 0 && all > 0) printf "%.0f %.2f %.2f %.2f %.2f %.2f %.2f %.2f", ms * 1000 / n, all / n, rd / n, wr / n, ep / n, fx / n, (all - rd - wr - ep - fx) / n, cs / n }
		' "$out/perf-$side.csv")
		[[ -n $v ]] || { log "$s: perf counted nothing for $side (see $out/perf-$side.csv)"; continue; }
		SYSC[$s.$side]=$v
	done
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
alternate "$SAT_ROUNDS" saturate "saturation, $CONNS connections" "${order[@]}"
alternate "$LAT_ROUNDS" latency "fixed rate, $RATE req/s over $LAT_CONNS connections, ${LAT_SECONDS}s" "${order[@]}"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
for s in $SETUPS; do
	read -r "P50[$s]" "P90[$s]" "P99[$s]" "P999[$s]" "LATN[$s]" < <(latency_percentiles "$T/out-$s"/latency-*.log)
done
if ((IDLE_CONNS > 0)); then
	for s in $SETUPS; do
		[[ -n ${PROXIES[$s]} ]] || continue
		log "$s: $IDLE_CONNS idle connections"
		idle_rss "$s"
	done
fi
if ((PERF_OK)); then
	for s in $SETUPS; do
		[[ -n ${PROXIES[$s]} ]] || continue
		log "syscall census: $s at saturation, under perf stat"
		census "$s"
	done
else
	log "perf unavailable (Debian package linux-perf): no system call census"
fi
if [[ " $SETUPS " == *" ward-b "* ]]; then
	n=$(grep -c 'gateway.request' "$T/ward-b-gateway.log" || true)
	log "ward-b access records in its log: $n lines (level $WARD_LOG_LEVEL)"
fi

# ---------------------------------------------------------------- table
declare -A RPS CPU CPUG CPUS CPUTOT SHARE
for s in $SETUPS; do
	RPS[$s]=$(median "${RPSLIST[$s]}")
	[[ -n ${PROXIES[$s]} ]] || continue
	# The round with the median G+S, and its G and S.
	IFS=: read -r "CPU[$s]" "CPUG[$s]" "CPUS[$s]" < <(tr ' ' '\n' <<<"${CPULIST[$s]}" | grep . | sort -t: -k1,1n |
		awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }')
	CPUTOT[$s]=$(usreq $((TICKG[$s] + TICKS[$s])) "${REQS[$s]}")
	SHARE[$s]=$(awk -v k=$((TICKG[$s] + TICKS[$s])) -v hz="$HZ" -v us="${WALL[$s]}" 'BEGIN { printf "%.0f", 100 * k / hz / (us / 1e6) }')
done
{
	echo
	echo "Edge: h2load =TLS 1.3, $EDGE_PROTO=> proxy -> app (nginx: return 200 \"ok\"); Ward: gateway =mTLS h2=> sidecar -> app"
	if [[ " $SETUPS " == *" ward-h1 "* ]]; then echo "ward-h1: ward-a built with HTTP/1.1 keep-alive on the mesh hop for HTTP/1.x callers"; fi
	echo "Saturation: $CONNS connections x 1 stream, $SAT_ROUNDS rounds of ~${SAT_SECONDS}s per set-up."
	echo "Fixed rate: $RATE req/s over $LAT_CONNS connections, $LAT_ROUNDS rounds of ${LAT_SECONDS}s per set-up, pooled."
	echo "Pinning: proxies on CPU $PROXY_CPU (GOMAXPROCS=1, worker_processes 1, nbthread 1), h2load + app on CPU $CLIENT_CPU; $ncpu cores; nice $NICE."
	echo "ward-b gateway --log-level $WARD_LOG_LEVEL (access record per request); ward-a and sidecars at warn; peers: no access log."
	echo "Load average before / after: $LOAD_BEFORE / $LOAD_AFTER"
	for s in $SETUPS; do echo "  $s: ${TLSINFO[$s]}"; done
	echo
	printf '%-8s %8s %5s %5s %5s | %6s %6s %6s %7s | %6s %6s %6s %6s %6s %6s | %6s %6s %6s %6s\n' \
		"" "req/s" "cpu0" "cpu1" "prox" "us/req" "G+S" "S" "cap" "p50" "p90" "p99" "p99.9" "+p50" "+p99" "RSS G" "RSS S" "1k G" "1k S"
	printf '%-8s %8s %5s %5s %5s | %6s %6s %6s %7s | %6s %6s %6s %6s %6s %6s | %6s %6s %6s %6s\n' \
		"" "median" "%" "%" "%" "G" "" "" "req/s G" "ms" "ms" "ms" "ms" "ms" "ms" "MiB" "MiB" "MiB" "MiB"
	for s in $SETUPS; do
		a50=- a99=- cap=-
		if [[ $s != direct && -n ${P50[direct]:-} ]]; then
			a50=$(minus "${P50[$s]}" "${P50[direct]}") a99=$(minus "${P99[$s]}" "${P99[direct]}")
		fi
		[[ -n ${CPUG[$s]:-} ]] && cap=$(awk -v c="${CPUG[$s]}" 'BEGIN { printf "%.0f", 1e6 / c }')
		gs=${CPU[$s]:--} sc=${CPUS[$s]:--}
		[[ ${PROXIES[$s]} == *"S="* ]] || gs=- sc=-
		printf '%-8s %8.0f %5s %5s %5s | %6s %6s %6s %7s | %6.2f %6.2f %6.2f %6.2f %6s %6s | %6s %6s %6s %6s\n' \
			"$s" "${RPS[$s]}" "$(pct "${BUSY0[$s]}" "${BUSY0T[$s]}")" "$(pct "${BUSY1[$s]}" "${BUSY1T[$s]}")" "${SHARE[$s]:--}" \
			"${CPUG[$s]:--}" "$gs" "$sc" "$cap" \
			"${P50[$s]}" "${P90[$s]}" "${P99[$s]}" "${P999[$s]}" "$a50" "$a99" \
			"$(mib "${RSSG[$s]:-}")" "$(mib "${RSSS[$s]:-}")" "$(mib "${IDLEG[$s]:-}")" "$(mib "${IDLES[$s]:-}")"
	done
	if [[ -n ${CPUG[nginx]:-} ]]; then
		echo
		echo "vs nginx      req/s    us/req G  us/req G+S  added p99  RSS G 1k conns"
		for s in $SETUPS; do
			[[ $s == nginx || $s == direct || -z ${CPUG[$s]:-} ]] && continue
			gs=-
			[[ ${PROXIES[$s]} == *"S="* ]] && gs=$(ratio "${CPU[$s]}" "${CPUG[nginx]}")
			a99=- n99=
			if [[ -n ${P99[direct]:-} ]]; then
				a99=$(minus "${P99[$s]}" "${P99[direct]}") n99=$(minus "${P99[nginx]}" "${P99[direct]}")
				a99=$(ratio "$a99" "$n99")
			fi
			printf '  %-9s %7s  %9s  %10s  %9s  %9s\n' "$s" "$(ratio "${RPS[$s]}" "${RPS[nginx]}")" \
				"$(ratio "${CPUG[$s]}" "${CPUG[nginx]}")" "$gs" "$a99" "$(ratio "${IDLEG[$s]:-}" "${IDLEG[nginx]:-}")"
		done
		if [[ -n ${CPUG[ward-b]:-} ]]; then
			echo
			echo "Target (issue 4): ward-b gateway CPU per request <= nginx's on the plain job:" \
				"${CPUG[ward-b]} vs ${CPUG[nginx]} us ($(ratio "${CPUG[ward-b]}" "${CPUG[nginx]}")); with its sidecar ${CPU[ward-b]} us."
		fi
		echo "CPU over all rounds, us/req (user / kernel of G+S):"
		for s in $SETUPS; do
			[[ -n ${CPUG[$s]:-} ]] || continue
			echo "  $s: G $(usreq "${TICKG[$s]}" "${REQS[$s]}"), G+S ${CPUTOT[$s]} ($(usreq $((TICKG[$s] + TICKS[$s] - TICKK[$s])) "${REQS[$s]}") / $(usreq "${TICKK[$s]}" "${REQS[$s]}"))"
		done
	fi
	if ((${#SYSC[@]})); then
		echo
		echo "per request, perf stat over an extra saturation run: CPU us, system calls by kind, context switches"
		printf '  %-8s %-4s %6s | %6s %6s %6s %6s %6s %6s | %6s\n' "" proc "cpu us" calls recv send epoll futex other cswch
		for s in $SETUPS; do
			for side in G S; do
				[[ -n ${SYSC[$s.$side]:-} ]] || continue
				# shellcheck disable=SC2086
				printf '  %-8s %-4s %6s | %6s %6s %6s %6s %6s %6s | %6s\n' "$s" "$side" ${SYSC[$s.$side]}
			done
		done
	fi
	echo
	echo "req/s     median of the saturation rounds; every response was a 200 (or the run stops)"
	echo "cpu0/cpu1 how busy the client+app core and the proxy core were at saturation (all processes)"
	echo "prox      CPU the measured processes got, % of one core: well below cpu1, other work took the core"
	echo "us/req    CPU (user+system) per request of the median round (by G+S): G the edge process (nginx:"
	echo "          the worker), S Ward's sidecar; all rounds in out-*/rounds.txt"
	echo "cap       1e6 / us/req G: what one dedicated core would carry through the edge process alone"
	echo "p50..p99  at the fixed rate, ${LATN[${order[0]}]} requests each; +p50/+p99: added to direct"
	echo "RSS       max VmRSS under saturation; 1k: VmRSS with $IDLE_CONNS idle client connections open"
	echo "raw output (h2load, per-request latency logs, proxy logs, configurations): $T"
} | tee "$T/table.txt"

# ---------------------------------------------------------------- profile
if [[ $PROFILE == 1 ]]; then
	pprof_addr="127.0.0.1:$(free_port)"
	log "profile: a ward-b gateway built with pprof (bench/mesh/wardprof) in front of ward-b's sidecar, under saturation"
	sc=$(grep -o '"127.0.0.1:[0-9]*"' "$T/ward-b.yaml" 2>/dev/null | head -1 | tr -d '"')
	[[ -n $sc ]] || { ward_server; start_ward ward-b "$WARD"; sc=$(grep -o '"127.0.0.1:[0-9]*"' "$T/ward-b.yaml" | head -1 | tr -d '"'); }
	start_ward wardprof "$T/wardprof" "$pprof_addr" "$sc"
	mkdir -p "$T/out-wardprof"
	warm_up wardprof "$T/out-wardprof/warmup.txt"
	NREQ[wardprof]=$((NREQ[wardprof] * 3)) # ~3 rounds' worth
	secs=$((SAT_SECONDS * 3 - 2))
	curl -s --max-time $((secs + 20)) -o "$T/profile.pb.gz" "http://$pprof_addr/debug/pprof/profile?seconds=$secs" &
	cp=$!
	hload wardprof -c "$CONNS" -n "${NREQ[wardprof]}" >"$T/out-wardprof/saturation.txt" 2>&1 || true
	wait "$cp" || true
	for sortby in flat cum; do
		{
			echo "== ward-b gateway: top 15 by $sortby =="
			if [[ $sortby == cum ]]; then
				go tool pprof -top -cum -nodecount=15 "$T/wardprof" "$T/profile.pb.gz" 2>/dev/null | sed -n '/^Duration/p;/flat%/,$p'
			else
				go tool pprof -top -nodecount=15 "$T/wardprof" "$T/profile.pb.gz" 2>/dev/null | sed -n '/^Duration/p;/flat%/,$p'
			fi
			echo
		} | tee -a "$T/profile.txt"
	done
	# Where the time goes, by layer: cumulative share of Ward's own functions
	# and the main library layers (they overlap).
	{
		echo "== ward-b gateway: cumulative share of Ward's functions and named layers (they overlap) =="
		go tool pprof -top -cum -nodecount=100000 "$T/wardprof" "$T/profile.pb.gz" 2>/dev/null |
			awk 'NF >= 6 { name = $6; for (i = 7; i <= NF; i++) name = name " " $i
				if ((name ~ /wardsec\/ward\/internal\// || name ~ /^crypto\/tls\.\(\*Conn\)\.(Read|Write|Handshake)/ ||
					name ~ /http2serverConn\)\.serve$|http2ClientConn\)\.readLoop$|^runtime\.(mallocgc|gcBgMarkWorker|schedule)$|log\/slog/) &&
					$5 + 0 >= 1.0) printf "  %7s %7s  %s\n", $4, $5, name }' | head -60
		echo
	} | tee -a "$T/profile.txt"
	echo "profile: $T/profile.pb.gz; go tool pprof -http=127.0.0.1:0 $T/wardprof $T/profile.pb.gz"
fi

# ---------------------------------------------------------------- stages
# Each role's BenchmarkStages runs its pipeline one prefix at a time; the
# difference between two lines is what the later stage costs. In process,
# no network except the last (forward) line.
if [[ ${STAGES:-1} == 1 ]]; then
	log "per-stage cost: BenchmarkStages of internal/gateway (ward-b request) and internal/sidecar"
	for pkg in gateway sidecar; do
		(cd "$WARD_SRC" && go test -run '^$' -bench '^BenchmarkStages$' -benchtime "${STAGE_N:-3000}x" -count 1 "./internal/$pkg/" 2>/dev/null) |
			awk -v role="$pkg" '/^BenchmarkStages\// {
				split($1, a, "/"); sub(/-[0-9]+$/, "", a[2]); ns = $3; al = $7
				if (!hdr++) printf "%-8s %-16s %12s %12s %10s %10s\n", "role", "stage", "ns/op (cum)", "+ns", "allocs", "+allocs"
				printf "%-8s %-16s %12.0f %12.0f %10d %10d\n", role, a[2], ns, ns - pns, al, al - pal
				pns = ns; pal = al }' | tee -a "$T/stages.txt"
	done
fi
