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
	var nginx, raw *Report
	for i := range reps {
		r := &reps[i]
		switch {
		case r.Target == "nginx" && r.Mode == modeRaw:
			raw = r
		case r.Target == "nginx":
			nginx = r
		}
		boot := stageReport(r, stageBoot)
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.2f s | %s | %.2f s | %s | %s | %.1f s | %.1f s |\n",
			runName(r), r.Nodes, r.Booted, r.FailedNodes, r.AllBootedSeconds, lat3(boot),
			r.ServerCPUSeconds, humanBytes(r.ServerPeakRSS), humanBytes(r.BytesTotal), r.ClientCPUSeconds, r.OtherCPUSeconds)
	}
	b.WriteString(formatRatios(reps, nginx, raw))
	for i := range reps {
		r := &reps[i]
		if r.Mode == modeFull {
			fmt.Fprintf(&b, "\n%s: DHCP replies not matched %d, malformed %d; socket drops: client port 68 %d, server port 67 %d, server port 69 %d\n",
				runName(r), r.DHCPUnmatched, r.DHCPMalformed, r.DHCPClientDrops, r.DHCPServerDrops, r.TFTPServerDrops)
		}
	}
	b.WriteString("\nNetwork counters during each run (TCP in the server's and the nodes' namespace):\n\n")
	for i := range reps {
		if reps[i].Network != "" {
			fmt.Fprintf(&b, "- %s: %s\n", runName(&reps[i]), reps[i].Network)
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

// formatRatios compares every run with its peers of the same run: wwserver
// with nginx serving the same files (target <= 1.1x), every HTTP run with
// the time its bytes need at the rate raw mode measured (target <= 1.2x),
// and the full boot's time to all booted with its boot p99 (target <= 1.3x).
func formatRatios(reps []Report, nginx, raw *Report) string {
	var b strings.Builder
	rawRate := 0.0
	if raw != nil && raw.FailedNodes == 0 && raw.AllBootedSeconds > 0 {
		rawRate = float64(raw.BytesTotal) / raw.AllBootedSeconds
		fmt.Fprintf(&b, "\n- raw rate (nginx, the chunks' bytes as ranges of one static file, %d nodes x %d at once): %s/s\n",
			raw.Nodes, stage2Parallel, humanBytes(int64(rawRate)))
	}
	for i := range reps {
		r := &reps[i]
		if r.Mode == modeRaw {
			continue
		}
		var parts []string
		if r.FailedNodes > 0 {
			parts = append(parts, fmt.Sprintf("not met: %d nodes failed, the target needs 0", r.FailedNodes))
		}
		if r.Target != "nginx" && nginx != nil && nginx.AllBootedSeconds > 0 {
			note := ""
			if nginx.FailedNodes > 0 {
				note = fmt.Sprintf(" (nginx lost %d nodes)", nginx.FailedNodes)
			}
			parts = append(parts, fmt.Sprintf("time to all booted %.2fx nginx's (target <= 1.1x)%s, server CPU %.2fx nginx's",
				r.AllBootedSeconds/nginx.AllBootedSeconds, note, ratio(r.ServerCPUSeconds, nginx.ServerCPUSeconds)))
		}
		if rawRate > 0 && r.BytesTotal > 0 {
			need := float64(r.BytesTotal) / rawRate
			parts = append(parts, fmt.Sprintf("%.2fx the %.1f s its %s need at the raw rate (target <= 1.2x)",
				r.AllBootedSeconds/need, need, humanBytes(r.BytesTotal)))
		}
		if boot := stageReport(r, stageBoot); r.Mode == modeFull && boot != nil && boot.P99ms > 0 {
			parts = append(parts, fmt.Sprintf("time to all booted %.2fx the boot p99 (target <= 1.3x)", r.AllBootedSeconds*1000/boot.P99ms))
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, "- %s: %s\n", runName(r), strings.Join(parts, "; "))
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "\n" + strings.TrimPrefix(b.String(), "\n")
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
