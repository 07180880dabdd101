// Command bootstorm plays a cluster's mass reboot against a running
// provisioning server and measures it: N simulated nodes, one MAC each, go
// through the whole boot as the firmware, iPXE and wwclient would (DHCP
// DORA as a PXE client, TFTP of the iPXE binary, iPXE's own DORA, the
// per-node iPXE script and every download it names, then wwclient's
// heartbeat and runtime overlay with If-None-Match every interval).
//
//	bootstorm storm -root TREE -wwserver BIN [-nginx BIN] -n 1000 [-arrival all|ramp] ...
//
// storm creates two network namespaces (wwstorm-PID-s and -c) joined by a
// veth, adapts the tree's wwserver.toml to that network, starts wwserver in
// the server namespace and the simulated nodes (this binary again,
// "bootstorm clients") in the client namespace; no traffic leaves them.
// With -nginx it then copies what wwserver served into a document root
// ("bootstorm mirror"), stops wwserver, starts nginx on the same address
// and storms it with the same clients from the iPXE script on (HTTP only),
// so the two are measured side by side. Every run is bounded by -timeout
// and stops by itself; the namespaces are removed at the end, also on error
// or Ctrl-C.
//
// It reports per stage p50/p99/max latency, failures by stage and reason,
// time to all booted, server CPU and peak RSS (from /proc of the server and
// its workers), client CPU and bytes, as a Markdown table on stdout and as
// JSON (-json, and report-*.json in -out). Progress goes to stderr.
// Needs root and iproute2; pure Go otherwise.
package main

import (
	"fmt"
	"log/slog"
	"os"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "storm":
		err = stormMain(os.Args[2:], log)
	case "clients": // inside the client namespace: config on stdin, report on stdout
		err = runClients(os.Stdin, os.Stdout, os.Stderr)
	case "mirror": // inside the client namespace: request on stdin, result on stdout
		err = runMirror(os.Stdin, os.Stdout)
	case "-h", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bootstorm:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: bootstorm storm -root TREE [-wwserver BIN] [-nginx BIN] [-n N] [flags]
  (bootstorm storm -h lists the flags)`)
}
