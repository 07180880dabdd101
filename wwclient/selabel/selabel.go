// Package selabel gives the files the agent writes the SELinux labels the
// loaded policy's file_contexts assign to their paths. A file created by a
// rename from a temporary file gets the label of its directory (etc_t for
// /etc/passwd instead of passwd_file_t), which confined services are then
// denied. The image's own restorecon does the matching, so the labels are
// exactly those setfiles gave the rest of the tree at boot.
package selabel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Defaults.
const (
	SELinuxFS  = "/sys/fs/selinux"
	BatchSize  = 256              // paths per restorecon run
	RunTimeout = 30 * time.Second // per restorecon run
)

// Restorecons are where images have restorecon (policycoreutils).
var Restorecons = []string{"/usr/sbin/restorecon", "/sbin/restorecon"}

// Enabled reports whether SELinux is on with a policy loaded.
func Enabled(selinuxfs string) bool {
	_, err := os.Stat(filepath.Join(selinuxfs, "enforce"))
	return err == nil
}

// Relabeler runs restorecon on paths.
type Relabeler struct {
	Restorecon string
	// Run runs a program to completion and returns its combined output;
	// default exec.CommandContext. Tests replace it.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// New returns a Relabeler when SELinux is enabled and the image has
// restorecon, else nil and the reason.
func New() (*Relabeler, string) {
	if !Enabled(SELinuxFS) {
		return nil, "SELinux is not enabled"
	}
	for _, p := range Restorecons {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return &Relabeler{Restorecon: p}, ""
		}
	}
	return nil, "no restorecon in the image (" + strings.Join(Restorecons, ", ") + ")"
}

// Relabel sets the policy's labels on paths (absolute), BatchSize at a
// time, each run bounded by RunTimeout. -F resets user, role and type.
func (r *Relabeler) Relabel(ctx context.Context, paths []string) error {
	run := r.Run
	if run == nil {
		run = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).CombinedOutput()
		}
	}
	var errs []error
	for len(paths) > 0 {
		n := min(len(paths), BatchSize)
		args := append([]string{"-F", "--"}, paths[:n]...)
		paths = paths[n:]
		rctx, cancel := context.WithTimeout(ctx, RunTimeout)
		out, err := run(rctx, r.Restorecon, args...)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w: %s", r.Restorecon, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}
