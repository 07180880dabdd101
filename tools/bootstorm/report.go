package main

import (
	"fmt"
	"sort"
	"strings"
)

// formatTable renders reports as Markdown: one summary row per run, the
// ratios of each wwserver run to the nginx run, then per-stage latencies.
func formatTable(reps []Report) string {
	var b strings.Builder
	b.WriteString("| run | nodes | booted | failed | time to all booted | boot p50 / p99 / max | server CPU | server peak RSS | bytes | client CPU | rest of the machine's CPU (other processes, softirq) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	var nginx *Report
	for i := range reps {
		r := &reps[i]
		if r.Target == "nginx" {
			nginx = r
		}
		boot := stageReport(r, stageBoot)
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.2f s | %s | %.2f s | %s | %s | %.1f s | %.1f s |\n",
			runName(r), r.Nodes, r.Booted, r.FailedNodes, r.AllBootedSeconds, lat3(boot),
			r.ServerCPUSeconds, humanBytes(r.ServerPeakRSS), humanBytes(r.BytesTotal), r.ClientCPUSeconds, r.OtherCPUSeconds)
	}
	if nginx != nil && nginx.AllBootedSeconds > 0 {
		b.WriteString("\n")
		for i := range reps {
			r := &reps[i]
			if r.Target == "nginx" {
				continue
			}
			note := ""
			if r.FailedNodes > 0 {
				note = fmt.Sprintf(" (not met: %d nodes failed, the target needs 0)", r.FailedNodes)
			}
			if nginx.FailedNodes > 0 {
				note += fmt.Sprintf(" (nginx lost %d nodes)", nginx.FailedNodes)
			}
			fmt.Fprintf(&b, "- %s: time to all booted %.2fx nginx's (target <= 1.2x)%s, server CPU %.2fx nginx's\n",
				runName(r), r.AllBootedSeconds/nginx.AllBootedSeconds, note, ratio(r.ServerCPUSeconds, nginx.ServerCPUSeconds))
		}
	}
	for i := range reps {
		r := &reps[i]
		if r.Mode == modeFull {
			fmt.Fprintf(&b, "\n%s: DHCP replies not matched %d, malformed %d; socket drops: client port 68 %d, server port 67 %d, server port 69 %d\n",
				runName(r), r.DHCPUnmatched, r.DHCPMalformed, r.DHCPClientDrops, r.DHCPServerDrops, r.TFTPServerDrops)
		}
	}
	b.WriteString("\nPer stage (successful steps; latency p50 / p99 / max; failures by reason):\n\n")
	b.WriteString("| run | stage | ok | failed | p50 / p99 / max | bytes | failures |\n|---|---|---|---|---|---|---|\n")
	for i := range reps {
		r := &reps[i]
		for _, s := range r.Stages {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s | %s |\n", runName(r), s.Stage, s.OK, s.Failed,
				lat3(&s), humanBytes(s.Bytes), failures(s.Failures))
		}
	}
	return b.String()
}

func runName(r *Report) string {
	s := r.Target + " " + r.Mode
	if r.Arrival == "ramp" {
		s += fmt.Sprintf(" (ramp %.0fs)", r.RampSeconds)
	}
	return s
}

func stageReport(r *Report, name string) *StageReport {
	for i := range r.Stages {
		if r.Stages[i].Stage == name {
			return &r.Stages[i]
		}
	}
	return nil
}

func lat3(s *StageReport) string {
	if s == nil || s.OK == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s / %s", ms(s.P50ms), ms(s.P99ms), ms(s.Maxms))
}

func ms(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func failures(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func humanBytes(v int64) string {
	f := float64(v)
	switch {
	case f >= 1e9:
		return fmt.Sprintf("%.2f GB", f/1e9)
	case f >= 1e6:
		return fmt.Sprintf("%.1f MB", f/1e6)
	case f >= 1e3:
		return fmt.Sprintf("%.1f KB", f/1e3)
	}
	return fmt.Sprintf("%d B", v)
}
