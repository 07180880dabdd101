#!/bin/bash
# wrk-side-by-side.sh: issue 8's HTTP targets in one run, loopback, 50
# connections: wwserver's iPXE script against nginx's 300-byte static file,
# wwserver's 8 MiB kernel against the same 8 MiB file from nginx, alternating
# rounds. Prints req/s, bytes/s and the server's CPU per request (user+sys of
# the server processes, from /proc) for each run.
#
#   tools/bench/wrk-side-by-side.sh [WWSERVER_BIN] [ROUNDS] [DURATION]
#
# Needs wrk and nginx (apt-get install -y wrk nginx-light). Everything runs
# on 127.0.0.1 in a temporary directory; both servers are stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=$(mktemp -d /tmp/wrk-side-by-side.XXXXXX)
chmod 755 "$D" # nginx's workers run unprivileged
WW=${1:-}
ROUNDS=${2:-3}
DUR=${3:-10s}
if [[ -z $WW ]]; then
	WW=$D/wwserver
	go build -o "$WW" ./server/cmd/wwserver
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WWPORT=$(port)
NGPORT=$(port)
MAC=52:54:00:00:00:01

mkdir -p "$D/img/boot" "$D/img/etc" "$D/nginx/html" "$D/nginx/logs" "$D/nginx/tmp"
head -c $((8 << 20)) /dev/urandom >"$D/img/boot/vmlinuz-6.1.0-1-amd64"
echo bench >"$D/img/etc/hostname"
head -c 300 /dev/urandom >"$D/nginx/html/small"
cp "$D/img/boot/vmlinuz-6.1.0-1-amd64" "$D/nginx/html/big"
"$WW" init "$D/tree" --wwclient "$WW" --image-from "$D/img" --address 127.0.0.1 --listen "127.0.0.1:$WWPORT" >/dev/null
cat >"$D/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $D/nginx/nginx.pid;
error_log $D/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off; sendfile on; tcp_nopush on;
	keepalive_requests 1000000; keepalive_timeout 120s;
	client_body_temp_path $D/nginx/tmp/body; proxy_temp_path $D/nginx/tmp/proxy;
	fastcgi_temp_path $D/nginx/tmp/fastcgi; uwsgi_temp_path $D/nginx/tmp/uwsgi; scgi_temp_path $D/nginx/tmp/scgi;
	default_type application/octet-stream;
	server { listen 127.0.0.1:$NGPORT; root $D/nginx/html; }
}
EOF
nginx -p "$D/nginx" -e "$D/nginx/logs/error.log" -c "$D/nginx/nginx.conf" &
NGPID=$!
"$WW" serve --root "$D/tree" --log-level warn &
WWPID=$!
trap 'kill $NGPID $WWPID 2>/dev/null; wait $NGPID $WWPID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$WWPORT/healthz" >/dev/null && curl -sf "http://127.0.0.1:$NGPORT/small" >/dev/null && break
	sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$WWPORT/kernel/$MAC" # first request opens the image
NGPIDS="$NGPID $(pgrep -P $NGPID | tr '\n' ' ')"

ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
run() { # label url pids...
	local c0 c1 out
	c0=$(ticks "${@:3}")
	out=$(wrk -t2 -c50 -d"$DUR" --timeout 10s "$2" 2>&1)
	c1=$(ticks "${@:3}")
	awk -v label="$1" -v ticks=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '
		/requests in/ { n = $1 }
		/Requests\/sec/ { rps = $2 }
		/Transfer\/sec/ { tr = $2 }
		/Non-2xx|Socket errors/ { err = err " " $0 }
		END { printf "%-12s %10.0f req/s %10s/s  server CPU %7.1f us/req%s\n", label, rps, tr, ticks * 1e6 / hz / n, err }' <<<"$out"
}
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)  wwserver: $WW"
for _ in $(seq "$ROUNDS"); do
	run nginx-small "http://127.0.0.1:$NGPORT/small" $NGPIDS
	run ww-ipxe "http://127.0.0.1:$WWPORT/ipxe/$MAC" $WWPID
	run nginx-big "http://127.0.0.1:$NGPORT/big" $NGPIDS
	run ww-kernel "http://127.0.0.1:$WWPORT/kernel/$MAC" $WWPID
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
