# shellcheck shell=bash
# tools/bench/peers.sh, sourced by the wrk benchmarks (targets.sh, rounds.sh).
# wrk_cycle_lua OUT LIST PREFIX: a wrk script that asks for PREFIX followed
# by each line of LIST in turn, round and round (every node's iPXE script,
# every chunk of an image).
wrk_cycle_lua() {
	cat >"$1" <<LUA
local names = {}
for line in io.lines("$2") do names[#names + 1] = line end
local i = 0
request = function()
	i = i % #names + 1
	return wrk.format("GET", "$3" .. names[i])
end
LUA
}

# nginx_conf DIR PORT: the peer nginx's configuration, serving DIR/html on
# 127.0.0.1:PORT (sendfile, tcp_nopush, long keep-alive, no access log).
nginx_conf() {
	local nd=$1 port=$2
	cat <<CONF
daemon off;
worker_processes auto;
pid $nd/nginx.pid;
error_log $nd/logs/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	keepalive_timeout 120s;
	client_body_temp_path $nd/tmp/body;
	proxy_temp_path $nd/tmp/proxy;
	fastcgi_temp_path $nd/tmp/fastcgi;
	uwsgi_temp_path $nd/tmp/uwsgi;
	scgi_temp_path $nd/tmp/scgi;
	default_type application/octet-stream;
	server {
		listen 127.0.0.1:$port;
		root $nd/html;
	}
}
CONF
}
