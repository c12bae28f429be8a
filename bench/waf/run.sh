#!/usr/bin/env bash
# bench/waf/run.sh: the price of input inspection. Ward's gateway with the
# WAF off, in dry-run, and enforced at paranoia 1 and 2 (OWASP CRS 4.25 in
# Coraza), side by side in one run with nginx + ModSecurity + the CRS
# (Debian's libnginx-mod-http-modsecurity and modsecurity-crs) as the peer
# where those packages install, on GETs and on 1 KiB JSON POSTs.
#
#   h2load ══ TLS 1.3, h2 ══▶ ward gateway ══ mTLS h2 ══▶ ward sidecar ──▶ app
#   h2load ══ TLS 1.3, h2 ══▶ nginx + ModSecurity ──▶ app            (peer)
#
#   ward-off     Route /off: no waf
#   ward-dry     Route /dry: waf {mode: dry-run}
#   ward-pl1     Route /pl1: waf {mode: enforce}
#   ward-pl2     Route /pl2: waf {mode: enforce, paranoia: 2}
#   modsec-pl1   nginx, SecRuleEngine On, the CRS at paranoia 1
#   modsec-pl2   the same at paranoia 2
#   app          an nginx: return 200 "ok"
#
# All Ward set-ups are routes of one gateway (one sidecar behind it); both
# peers are locations of one nginx. Every request of the benchmark is
# benign: it passes every set-up (checked first). Measured per set-up and
# load: requests/s at saturation and CPU µs per request of the edge
# process (the gateway; the nginx worker), the median of ROUNDS rounds,
# set-ups alternating. The edge processes run on CPU 1 (GOMAXPROCS=1, one
# nginx worker), h2load, the sidecar and the app on CPU 0.
#
# Environment (defaults in brackets):
#   ROUNDS [3] x SECONDS [3]   saturation rounds per set-up and load
#   CONNS [16]                 h2load connections (one stream each)
#   SETUPS ["ward-off ward-dry ward-pl1 ward-pl2 modsec-pl1 modsec-pl2"]
#   NICE [0], BENCH_DIR, MAX_SECONDS [600], WARD_SRC [this checkout]
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SECONDS_PER=${SECONDS:-3}
CONNS=${CONNS:-16}
SETUPS=${SETUPS:-ward-off ward-dry ward-pl1 ward-pl2 modsec-pl1 modsec-pl2}
NICE=${NICE:-0}
MAX_SECONDS=${MAX_SECONDS:-600}
HERE=$(cd "$(dirname "$0")" && pwd)
WARD_SRC=${WARD_SRC:-$(cd "$HERE/../.." && pwd)}
NGINX=${NGINX:-/usr/sbin/nginx}

# shellcheck source=../gateway/lib.sh
source "$HERE/../gateway/lib.sh"
bench_init ward-waf

missing=()
command -v h2load >/dev/null || missing+=(nghttp2-client)
[[ -x $NGINX ]] || missing+=(nginx)
command -v openssl >/dev/null || missing+=(openssl)
install_missing "${missing[@]}"
MODSEC_MODULE=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
if [[ $SETUPS == *modsec* && (! -e $MODSEC_MODULE || ! -d /usr/share/modsecurity-crs) ]]; then
	install_missing libnginx-mod-http-modsecurity modsecurity-crs || true
fi
if [[ ! -e $MODSEC_MODULE || ! -d /usr/share/modsecurity-crs/rules ]]; then
	log "nginx + ModSecurity + CRS could not be installed: no peer"
	SETUPS=$(tr ' ' '\n' <<<"$SETUPS" | grep -v '^modsec' | tr '\n' ' ')
fi
pin_self

log "building ward from $WARD_SRC"
(cd "$WARD_SRC" && go build -o "$T/ward" ./cmd/ward)

# The app.
APP_PORT=$(free_port)
nginx_start app "$CLIENT_CPU" "    server { listen 127.0.0.1:$APP_PORT; location / { return 200 \"ok\\n\"; } }"
wait_http "http://127.0.0.1:$APP_PORT/" 200 || die "app not answering"

# Ward: server, sidecar, gateway.
SRV=$(free_port) PUB=$(free_port) SC=$(free_port) GW=$(free_port)
"$T/ward" server --data-dir "$T/ward-data" --trust-domain example.org \
	--listen "127.0.0.1:$SRV" --public-listen "127.0.0.1:$PUB" --log-level warn >"$T/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -f $T/ward-data/client.json ]] && break; sleep 0.2; done
[[ -f $T/ward-data/client.json ]] || die "ward server not ready"
cat >"$T/waf.yaml" <<EOF
apiVersion: ward/v1
kind: Service
metadata: {name: app}
spec: {endpoints: ["127.0.0.1:$SC"]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: app-callers}
spec:
  target: app
  rules:
    - from: [gateway/edge]
EOF
for r in "off:" "dry:waf: {mode: dry-run}" "pl1:waf: {mode: enforce}" "pl2:waf: {mode: enforce, paranoia: 2}"; do
	cat >>"$T/waf.yaml" <<EOF
---
apiVersion: ward/v1
kind: Route
metadata: {name: ${r%%:*}}
spec:
  pathPrefix: /${r%%:*}
  service: app
  auth: {apiKey: none, user: anonymous}
  ${r#*:}
EOF
done
COMMON=(--config "$T/waf.yaml" --server "https://127.0.0.1:$SRV" --bundle "$T/ward-data/bundle.pem" --log-level warn)
token() { "$T/ward" token create --data-dir "$T/ward-data" --id "$1" | head -1; }
"${PIN_CLIENT[@]}" env GOMAXPROCS=1 "$T/ward" sidecar --service app --listen "127.0.0.1:$SC" --app "127.0.0.1:$APP_PORT" --outbound "" \
	--token "$(token spiffe://example.org/svc/app)" --data-dir "$T/sc" "${COMMON[@]}" >"$T/sidecar.log" 2>&1 &
PIDS+=($!)
"${PIN_PROXY[@]}" env GOMAXPROCS=1 "$T/ward" gateway --name edge --listen "127.0.0.1:$GW" --tls-ward-ca \
	--conn-rate 100000/s --conn-burst 100000 --max-requests-per-source 1024 \
	--token "$(token spiffe://example.org/gateway/edge)" --data-dir "$T/gw" "${COMMON[@]}" >"$T/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=($!)

# The peer: nginx + ModSecurity + CRS, one worker on the proxy CPU. Like
# Ward: request rules only, no response body inspection, no audit log.
if [[ $SETUPS == *modsec* ]]; then
	MS=$(free_port)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
		-keyout "$T/peer.key" -out "$T/peer.crt" 2>/dev/null
	CRS_VERSION=$(dpkg-query -W -f '${Version}' modsecurity-crs 2>/dev/null || echo "?")
	for pl in 1 2; do
		cat >"$T/modsec-pl$pl.conf" <<EOF
Include /etc/nginx/modsecurity.conf
SecRuleEngine On
SecResponseBodyAccess Off
SecAuditEngine Off
SecTmpDir $T
SecDataDir $T
Include /etc/modsecurity/crs/crs-setup.conf
SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.paranoia_level=$pl"
SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
Include /usr/share/modsecurity-crs/rules/REQUEST-*.conf
EOF
	done
	d="$T/peer"
	mkdir -p "$d/logs" "$d/tmp"
	cat >"$d/nginx.conf" <<EOF
load_module $MODSEC_MODULE;
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
    upstream app { server 127.0.0.1:$APP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$MS ssl http2;
        ssl_certificate $T/peer.crt; ssl_certificate_key $T/peer.key;
        ssl_protocols TLSv1.3;
        modsecurity on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /pl1 { modsecurity_rules_file $T/modsec-pl1.conf; proxy_pass http://app; }
        location /pl2 { modsecurity_rules_file $T/modsec-pl2.conf; proxy_pass http://app; }
    }
}
EOF
	"$NGINX" -t -q -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" || die "nginx peer: bad configuration"
	nice -n "$NICE" taskset -c "$PROXY_CPU" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" -g 'daemon off;' >"$d/logs/stdout" 2>&1 &
	PIDS+=($!)
	PEER_MASTER=$!
	wait_http "https://localhost:$MS/pl1/" 200 -k || die "peer not answering (see $d/logs/error.log)"
fi

# The 1 KiB JSON body of the POSTs: an ordinary order.
BODY='{"customer":{"name":"Zoë Martin","email":"zoe@example.com","phone":"+33 6 12 34 56 78"},"items":[{"sku":"sku-1234","qty":2,"price":"19.99"},{"sku":"sku-88","qty":1,"price":"5.00"}],"shipping":{"line1":"10 rue de la Paix","city":"Paris","postcode":"75002","country":"FR"},"note":"Please leave it at the door — thanks! Call me when you arrive.","gift":true,"message":"Happy birthday, Jo! Open it on Sunday.","coupon":"SPRING-24","pad":"'
while ((${#BODY} < 1022)); do BODY+=x; done
BODY+='"}'
printf '%s' "$BODY" >"$T/body.json"

url() { # SETUP QUERY
	case $1 in
	ward-*) echo "https://localhost:$GW/${1#ward-}/items$2" ;;
	modsec-*) echo "https://localhost:$MS/${1#modsec-}/items$2" ;;
	esac
}
edge_pids() {
	case $1 in
	ward-*) echo "$GW_PID" ;;
	modsec-*) workers "$PEER_MASTER" ;;
	esac
}
QUERY='?page=2&sort=created'

wait_http "https://localhost:$GW/off/items" 200 -k || die "gateway not forwarding (see $T/gateway.log)"
for s in $SETUPS; do
	expect "$s GET" 200 ok -k "$(url "$s" "$QUERY")"
	expect "$s POST" 200 ok -k -H 'Content-Type: application/json' --data-binary @"$T/body.json" "$(url "$s" "")"
	expect "$s blocks an injection" "$([[ $s == *off || $s == *dry ]] && echo 200 || echo 403)" "" -k "$(url "$s" "?id=1%27%20OR%20%271%27=%271%27%20--")"
done

declare -A RPS CPU
measure() { # SETUP ROUND; for LOAD in get post
	local s=$1 load args before after n rps
	for load in get post; do
		args=(-c "$CONNS" -m 1 -D "$SECONDS_PER" --warm-up-time=1)
		if [[ $load == post ]]; then
			args+=(-d "$T/body.json" -H 'content-type: application/json')
			u=$(url "$s" "")
		else
			u=$(url "$s" "$QUERY")
		fi
		read -r before _ <<<"$(cpu_ticks $(edge_pids "$s"))"
		"${PIN_CLIENT[@]}" h2load "${args[@]}" "$u" >"$T/h2load-$s-$load-$2.txt" 2>&1 || die "h2load $s $load"
		read -r after _ <<<"$(cpu_ticks $(edge_pids "$s"))"
		n=$(awk '/^status codes:/ { print $3 }' "$T/h2load-$s-$load-$2.txt")
		rps=$(awk '/^finished in/ { print $4 }' "$T/h2load-$s-$load-$2.txt")
		[[ $(awk '/^status codes:/ { print $7 + $9 }' "$T/h2load-$s-$load-$2.txt") == 0 ]] ||
			die "$s $load: answers other than 2xx (see $T/h2load-$s-$load-$2.txt)"
		if ((n == 0)); then # nothing finished within the round: say so, keep the round out
			log "$s $load round $2: no request completed in ${SECONDS_PER}s (a busy machine?); round left out"
			continue
		fi
		RPS[$s.$load]+="$rps "
		CPU[$s.$load]+="$(usreq $((after - before)) "$n") "
	done
}
# shellcheck disable=SC2086
alternate "$ROUNDS" measure saturation $SETUPS

echo
echo "WAF price, median of $ROUNDS rounds x ${SECONDS_PER}s, $CONNS connections, edge on one CPU"
[[ $SETUPS == *modsec* ]] && echo "(peer: nginx $("$NGINX" -v 2>&1 | sed 's/.*\///') + ModSecurity + CRS $CRS_VERSION; Ward: CRS 4.25 in Coraza)"
printf '%-12s %12s %12s %10s   %12s %12s %10s\n' setup "GET req/s" "GET µs/req" "vs off" "POST req/s" "POST µs/req" "vs off"
off_get=$(median "${RPS[ward-off.get]:-}") off_post=$(median "${RPS[ward-off.post]:-}")
for s in $SETUPS; do
	g=$(median "${RPS[$s.get]}") p=$(median "${RPS[$s.post]}")
	printf '%-12s %12.0f %12s %10s   %12.0f %12s %10s\n' "$s" "$g" "$(median "${CPU[$s.get]}")" "$(ratio "$g" "$off_get")" \
		"$p" "$(median "${CPU[$s.post]}")" "$(ratio "$p" "$off_post")"
done
