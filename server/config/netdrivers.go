package config

import (
	"fmt"
	"sort"
	"strings"
)

// network_drivers: the kernel modules a two-stage node's first stage gets
// (server/artifact KernelModules), instead of every network driver of its
// kernel. Names are module names as modprobe takes them ("-" and "_" are
// the same).
const (
	// MaxNetworkDrivers bounds the list (a node has a handful of NIC types).
	MaxNetworkDrivers = 64
	// MaxModuleName is the kernel's MODULE_NAME_LEN less its NUL (64 - 8 - 1).
	MaxModuleName = 55
)

// CheckModuleName reports why s cannot be a kernel module name: empty,
// longer than MaxModuleName, or not only letters, digits, '_' and '-'.
func CheckModuleName(s string) error {
	if s == "" || len(s) > MaxModuleName {
		return fmt.Errorf("module name %q must be 1-%d characters", s, MaxModuleName)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("module name %q holds %q: only letters, digits, '_' and '-'", s, r)
		}
	}
	return nil
}

// CheckNetworkDrivers checks a whole network_drivers list.
func CheckNetworkDrivers(list []string) error {
	if len(list) > MaxNetworkDrivers {
		return fmt.Errorf("%d modules; at most %d", len(list), MaxNetworkDrivers)
	}
	for _, m := range list {
		if err := CheckModuleName(m); err != nil {
			return err
		}
	}
	return nil
}

// NetworkDriverSet returns list as canonical module names ("-" as "_"),
// sorted, without duplicates: the same set however it is written.
func NetworkDriverSet(list []string) []string {
	out := make([]string, 0, len(list))
	for _, m := range list {
		out = append(out, strings.ReplaceAll(m, "-", "_"))
	}
	sort.Strings(out)
	j := 0
	for i, m := range out {
		if i == 0 || m != out[j-1] {
			out[j] = m
			j++
		}
	}
	return out[:j]
}

// checkNetworkDrivers checks network_drivers where it is written.
func (r *resolver) checkNetworkDrivers() {
	r.eachWritten(func(key string, e *Entry) {
		if err := CheckNetworkDrivers(e.NetworkDrivers); err != nil {
			r.fail(key+".network_drivers", "%v", err)
		}
	})
}
