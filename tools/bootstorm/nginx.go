package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeNginxConf writes an nginx configuration under prefix that serves
// docroot on the storm's address and port as a tuned static server would
// (sendfile, no access log, keep-alive) and answers wwclient's heartbeat
// and progress POSTs with 204, so the same clients can storm it.
func writeNginxConf(prefix, docroot string, p netPlan) (string, error) {
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			return "", err
		}
	}
	conf := fmt.Sprintf(`# written by tools/bootstorm
daemon off;
master_process on;
# Workers read the document root as bootstorm wrote it (the storm runs as
# root, in its own namespace).
user root;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 16384; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_timeout 65;
	# A storm shares 2 cores with its clients: a response may wait longer
	# than the default 60 s between two writes.
	send_timeout 10m;
	default_type application/octet-stream;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	server {
		listen %[2]s:%[3]d backlog=16384;
		root %[4]s;
		location /heartbeat/ { return 204; }
		location /progress/ { return 204; }
	}
}
`, prefix, p.ServerIP, p.Port, docroot)
	path := filepath.Join(prefix, "nginx.conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}
