// Package procstat reads a process's CPU time and peak memory from /proc,
// for load tools that measure a server they did not start in-process.
package procstat

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPU is a process's user+system CPU time in seconds (/proc/PID/stat).
func CPU(pid int) (float64, error) {
	st, err := stat(pid)
	if err != nil {
		return 0, err
	}
	ut, err1 := strconv.ParseFloat(st[11], 64)
	sy, err2 := strconv.ParseFloat(st[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad CPU fields", pid)
	}
	return (ut + sy) / clockTicks, nil
}

// PPid is a process's parent.
func PPid(pid int) (int, error) {
	st, err := stat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(st[1])
}

// stat returns the fields of /proc/PID/stat after the command name (which
// is in parentheses and may hold spaces): [0] is the state, [1] the parent.
func stat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// PeakRSS is a process's peak resident set (VmHWM) in bytes.
func PeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("/proc/%d/status: VmHWM %q", pid, v)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmHWM: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// Tree is pid and its direct children (a master process and its workers,
// as nginx runs).
func Tree(pid int) []int {
	pids := []int{pid}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return pids
	}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		if pp, err := PPid(p); err == nil && pp == pid {
			pids = append(pids, p)
		}
	}
	return pids
}

// Usage sums CPU seconds and peak RSS over pids; processes that are gone
// are skipped.
func Usage(pids []int) (cpu float64, peakRSS int64) {
	for _, p := range pids {
		if c, err := CPU(p); err == nil {
			cpu += c
		}
		if r, err := PeakRSS(p); err == nil {
			peakRSS += r
		}
	}
	return cpu, peakRSS
}

// MachineBusy is the CPU time (s) all of this machine's CPUs spent busy
// since boot, from /proc/stat: user, nice, system, irq and softirq, plus
// steal (time the hypervisor gave to other machines) when withSteal; -1 when
// unknown.
func MachineBusy(withSteal bool) float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	fields := f[1:8] // user nice system idle iowait irq softirq
	if withSteal {
		fields = f[1:9]
	}
	var busy float64
	for i, v := range fields {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return -1
		}
		busy += x
	}
	return busy / 100
}
