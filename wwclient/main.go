// Command wwclient is the node side of wwcluster: run as PID 1 (or as
// /init) it is the initramfs bootstrap, otherwise the agent that sends
// heartbeats and keeps the runtime overlay up to date. See DESIGN.md.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wwcluster/ww/wwclient/bootstrap"
)

func main() {
	if os.Getpid() == 1 || filepath.Base(os.Args[0]) == "init" {
		runBootstrap()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// runBootstrap never returns when PID 1: the kernel panics if init exits.
func runBootstrap() {
	if os.Getpid() != 1 {
		// e.g. /init run by hand on a booted node: switching the root
		// there would wreck the running system
		fmt.Fprintln(os.Stderr, "wwinit: ERROR: the bootstrap runs only as PID 1 from the initramfs; not doing anything")
		os.Exit(1)
	}
	b := &bootstrap.Bootstrap{
		Sys:     bootstrap.OS{},
		Console: os.Stdout,
		Version: version(),
		Args:    os.Args,
		Env:     os.Environ(),
		Image:   imageLoader(), // twostage.go
	}
	b.Run()
	fmt.Fprintln(os.Stdout, "wwinit: ERROR: no init, no shell and no reboot possible; halted")
	for {
		time.Sleep(time.Hour)
	}
}
