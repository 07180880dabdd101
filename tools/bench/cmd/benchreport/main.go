// Command benchreport prints the results of tools/bench/run.sh: with -dir, a
// Markdown table of every measurement (ranges over the repeats) next to
// Warewulf 4.7's figures from our competitive notes; with -one, a one-line
// summary of one httpload JSON result; with -machine, a description of this
// machine.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// result is an httpload -json result or a scalar record of run.sh.
type result struct {
	Label           string             `json:"label"`
	Seconds         float64            `json:"seconds"`
	Requests        int64              `json:"requests"`
	Errors          int64              `json:"errors"`
	Status          map[string]int64   `json:"status"`
	TransportErrors map[string]int64   `json:"transport_errors"`
	ReqPerSec       float64            `json:"req_per_sec"`
	BytesPerSec     float64            `json:"bytes_per_sec"`
	Bytes           int64              `json:"bytes"`
	BytesPerResp    float64            `json:"bytes_per_response"`
	LatencyMs       map[string]float64 `json:"latency_ms"`
	LoadCPU         float64            `json:"load_cpu_seconds"`
	ServerCPU       *float64           `json:"server_cpu_seconds"`
	ServerCPUPerReq *float64           `json:"server_cpu_us_per_req"`
	ReadySeconds    *float64           `json:"ready_seconds"`
	OtherCPU        *float64           `json:"other_cpu_seconds"`
	Value           *float64           `json:"value"`
	Unit            string             `json:"unit"`
	Files           *int64             `json:"files"`
	ScalarBytes     *int64             `json:"-"`
}

func main() {
	dir := flag.String("dir", "", "results directory of run.sh: print the table")
	one := flag.String("one", "", "one httpload JSON result: print a summary line")
	ab := flag.String("ab", "", "results directory of ab.sh: compare A and B")
	other := flag.String("other", "", "one httpload JSON result: print the CPU other processes used during it, in % of one CPU")
	machine := flag.Bool("machine", false, "describe this machine")
	latency := flag.String("latency", "", "with a JSON result as argument: print this latency in ms (p50, p90, p99, max, ...)")
	flag.Parse()
	var err error
	switch {
	case *machine:
		describeMachine(os.Stdout)
	case *latency != "" && flag.NArg() == 1:
		var r *result
		if r, err = readResult(flag.Arg(0)); err == nil {
			v, ok := r.LatencyMs[*latency]
			if !ok || r.Requests == 0 {
				err = fmt.Errorf("%s: no %s latency", flag.Arg(0), *latency)
			} else {
				fmt.Printf("%.2f\n", v)
			}
		}
	case *one != "":
		err = summary(*one, os.Stdout)
	case *other != "":
		var r *result
		if r, err = readResult(*other); err == nil {
			pct := 0.0
			if r.OtherCPU != nil && r.Seconds > 0 {
				pct = *r.OtherCPU / r.Seconds * 100
			}
			fmt.Printf("%.0f\n", pct)
		}
	case *ab != "":
		err = abTable(*ab, os.Stdout)
	case *dir != "":
		err = table(*dir, os.Stdout)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func readResult(path string) (*result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Scalar records keep the bytes written as "bytes".
	if r.Value != nil && r.Bytes != 0 {
		b := r.Bytes
		r.ScalarBytes = &b
	}
	return &r, nil
}

func summary(path string, out io.Writer) error {
	r, err := readResult(path)
	if err != nil {
		return err
	}
	errs := ""
	if r.Errors > 0 {
		errs = fmt.Sprintf(" ERRORS %d %v %v", r.Errors, r.Status, r.TransportErrors)
	}
	cpu := ""
	if r.ServerCPUPerReq != nil {
		cpu = fmt.Sprintf(", server %.0f µs CPU/req", *r.ServerCPUPerReq)
	}
	fmt.Fprintf(out, "  %-20s %7.0f req/s %8s/s  p50 %s p99 %s max %s  (%d req in %.1fs, %s/resp%s, load gen %.1f s CPU)%s\n",
		r.Label, r.ReqPerSec, human(r.BytesPerSec), ms(r.LatencyMs["p50"]), ms(r.LatencyMs["p99"]), ms(r.LatencyMs["max"]),
		r.Requests, r.Seconds, human(perResp(r)), cpu, r.LoadCPU, errs)
	if r.OtherCPU != nil && r.Seconds > 0 {
		fmt.Fprintf(out, "  %-20s other processes used %.0f%% of one CPU meanwhile\n", "", *r.OtherCPU/r.Seconds*100)
	}
	return nil
}

func perResp(r *result) float64 { return r.BytesPerResp }

func ms(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 1:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func human(v float64) string {
	units := []string{"B", "KB", "MB", "GB", "TB"}
	i := 0
	for v >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	if v >= 100 || i == 0 {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.2g %s", v, units[i])
}

// row is one line of the table.
type row struct {
	title    string
	key      string // unpinned results: key.N.json
	pinned   string // pinned results, "" for none
	show     string // rps, bps, ready, first (n requests: total time), build, scalar
	warewulf string
}

var rows = []row{
	{"Start to ready (/healthz answers), 10,000 nodes, empty state", "ready10k", "", "ready", "22.6 s"},
	{"… first iPXE script served, from start, 10,000 nodes", "firstipxe10k", "", "ready", "—"},
	{"Restart to ready, 10,000 nodes, status.json of 10,000 nodes", "restart10k", "", "ready", "—"},
	{"/status, 10,000 nodes all seen, 50 conns", "status10k", "", "rps", "~115 req/s, p99 1.1 s (1.6 MB)"},
	{"/status, 10,000 nodes with heartbeats, 50 conns", "status10k-hb", "", "rps", "—"},
	{"Heartbeat POST, 10,000 nodes, 50 conns", "heartbeat10k", "", "rps", "—"},
	{"iPXE script, 1,000 nodes, 50 conns, MAC varied", "ipxe", "ipxe-pin", "rps", "~1,170 req/s, p99 ~270 ms"},
	{"Runtime overlay, 1,000 nodes, 50 conns (built)", "runtime", "runtime-pin", "rps", "~1,500 req/s"},
	{"Runtime overlay, If-None-Match → 304 (wwclient's poll)", "runtime304", "", "rps", "—"},
	{"Runtime overlay cold: each of 1,000 nodes once, built on demand", "runtime-cold", "", "first", "—"},
	{"Runtime overlay after `wwserver build`: each node once", "runtime-prebuilt", "", "first", "—"},
	{"System overlay cold: each of 1,000 nodes once", "system-cold", "", "first", "—"},
	{"System overlay, 1,000 nodes, 50 conns (built)", "system", "", "rps", "—"},
	{"/status, 1,000 nodes seen, 50 conns", "status1k", "status1k-pin", "rps", "~1,500 req/s (130 KB)"},
	{"Kernel (8 MiB), 50 conns", "kernel", "kernel-pin", "bps", "~2.0 GB/s"},
	{"Image (image.img.gz), 50 conns", "image", "", "bps", "—"},
	{"Heartbeat POST, 1,000 nodes, 50 conns", "heartbeat", "", "rps", "—"},
	{"/provision/{mac}?stage=ipxe (Warewulf's URL), 50 conns", "provision-ipxe", "", "rps", "—"},
	{"wwserver peak RSS, 1,000 nodes, after the runs above", "rss1k", "", "mb", "—"},
	{"wwserver peak RSS, 10,000 nodes, after the runs above", "rss10k", "", "mb", "—"},
	{"`wwserver build`, 1,000 nodes, empty cache", "build1k", "", "build", "~250 s, 10.3 GB written"},
	{"`wwserver build` again, nothing changed", "build1k-again", "", "scalar", "—"},
	{"nginx reference: 300-byte file, 50 conns", "nginx-small", "", "rps", "nginx: ~57,000 req/s"},
	{"nginx reference: 256 MiB file, 50 conns", "nginx-big", "", "bps", "nginx: ~1.56 GB/s"},
}

func load(dir, key string) ([]*result, error) {
	if key == "" {
		return nil, nil
	}
	paths, err := filepath.Glob(filepath.Join(dir, key+".*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var rs []*result
	for _, p := range paths {
		// key.N.json only: "runtime.1.json" must not pick "runtime304.1.json" (it does not) nor "runtime.x.y.json".
		rest := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), key+"."), ".json")
		if _, err := strconv.Atoi(rest); err != nil {
			continue
		}
		r, err := readResult(p)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// span formats the range of vals with f.
func span(vals []float64, f func(float64) string) string {
	if len(vals) == 0 {
		return "—"
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	a, b := f(lo), f(hi)
	if a == b {
		return a
	}
	return a + "–" + b
}

func count(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func gbps(v float64) string { return fmt.Sprintf("%.2f", v/1e9) }

func secs(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.0f ms", v*1000)
	}
	return fmt.Sprintf("%.2f s", v)
}

func collect(rs []*result, f func(*result) float64) []float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return v
}

// cell formats one set of repeats.
func cell(rs []*result, show string) string {
	if len(rs) == 0 {
		return "—"
	}
	var errs int64
	for _, r := range rs {
		errs += r.Errors
	}
	p99 := func(r *result) float64 { return r.LatencyMs["p99"] }
	var done int64
	for _, r := range rs {
		done += r.Requests
	}
	var s string
	switch show {
	case "rps":
		s = fmt.Sprintf("%s req/s, p99 %s", span(collect(rs, func(r *result) float64 { return r.ReqPerSec }), count),
			span(collect(rs, p99), ms))
		if sz := perResp(rs[0]); sz >= 1000 {
			s += fmt.Sprintf(" (%s)", human(sz))
		}
	case "bps":
		s = span(collect(rs, func(r *result) float64 { return r.BytesPerSec }), gbps) + " GB/s"
		if done > 0 {
			s += fmt.Sprintf(" (%s req/s, p99 %s)", span(collect(rs, func(r *result) float64 { return r.ReqPerSec }), count),
				span(collect(rs, p99), ms))
		} else {
			s += " (no response completes within a run: bytes received per second)"
		}
	case "first":
		s = fmt.Sprintf("%s for %d requests (%s req/s, p99 %s)", span(collect(rs, func(r *result) float64 { return r.Seconds }), secs),
			rs[0].Requests, span(collect(rs, func(r *result) float64 { return r.ReqPerSec }), count), span(collect(rs, p99), ms))
	case "ready":
		s = span(collect(rs, func(r *result) float64 {
			if r.ReadySeconds == nil {
				return math.NaN()
			}
			return *r.ReadySeconds
		}), secs)
	case "build":
		s = span(collect(rs, func(r *result) float64 { return *r.Value }), secs)
		s += ", " + span(collect(rs, func(r *result) float64 {
			if r.ScalarBytes == nil {
				return 0
			}
			return float64(*r.ScalarBytes)
		}), func(v float64) string { return human(v) }) + " written"
		if rs[0].Files != nil {
			s += fmt.Sprintf(" (%d files)", *rs[0].Files)
		}
	case "scalar":
		s = span(collect(rs, func(r *result) float64 { return *r.Value }), secs)
	case "mb":
		s = span(collect(rs, func(r *result) float64 { return *r.Value }), func(v float64) string { return fmt.Sprintf("%.0f MB", v) })
	}
	if errs > 0 {
		s += fmt.Sprintf(" **%d errors**", errs)
	}
	if len(rs) > 1 {
		s += fmt.Sprintf(" [%d runs]", len(rs))
	}
	return s
}

func cpuCell(rs []*result) string {
	return span(collect(filterCPU(rs), func(r *result) float64 { return *r.ServerCPUPerReq }), func(v float64) string {
		if v >= 1000 {
			return fmt.Sprintf("%.1f ms", v/1000)
		}
		return fmt.Sprintf("%.0f µs", v)
	})
}

// otherCell is the range of CPU (in % of one CPU) that processes other than
// the server and the load generator used during the runs.
func otherCell(rs []*result) string {
	var v []float64
	for _, r := range rs {
		if r.OtherCPU != nil && r.Seconds > 0 {
			v = append(v, *r.OtherCPU/r.Seconds*100)
		}
	}
	return span(v, func(x float64) string { return fmt.Sprintf("%.0f%%", x) })
}

// cpuPerGB is the server's CPU time per GB sent, for throughput rows.
func cpuPerGB(rs []*result) string {
	var v []float64
	for _, r := range rs {
		if r.ServerCPU != nil && r.Bytes > 0 {
			v = append(v, *r.ServerCPU/(float64(r.Bytes)/1e9))
		}
	}
	return span(v, func(x float64) string { return fmt.Sprintf("%.2f s/GB", x) })
}

func filterCPU(rs []*result) []*result {
	var out []*result
	for _, r := range rs {
		if r.ServerCPUPerReq != nil {
			out = append(out, r)
		}
	}
	return out
}

func table(dir string, out io.Writer) error {
	if m, err := os.ReadFile(filepath.Join(dir, "machine.txt")); err == nil {
		fmt.Fprintf(out, "```\n%s```\n\n", m)
	}
	fmt.Fprintln(out, "| measurement | wwserver, unpinned | wwserver on CPU 0, load on CPU 1 | server CPU / request | other processes' CPU | Warewulf 4.7 (notes) |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|")
	for _, rw := range rows {
		un, err := load(dir, rw.key)
		if err != nil {
			return err
		}
		pin, err := load(dir, rw.pinned)
		if err != nil {
			return err
		}
		if len(un) == 0 && len(pin) == 0 {
			continue
		}
		pinCell := "—"
		if rw.pinned != "" {
			pinCell = cell(pin, rw.show)
		}
		cpu := cpuCell(un)
		if rw.show == "bps" {
			cpu = cpuPerGB(un)
		}
		if rw.show == "ready" || rw.show == "build" || rw.show == "scalar" || rw.show == "mb" {
			cpu = "—"
		}
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s | %s |\n", rw.title, cell(un, rw.show), pinCell, cpu, otherCell(append(un, pin...)), rw.warewulf)
	}
	return nil
}

func describeMachine(out io.Writer) {
	model := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			mem = fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	kernel := ""
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(data))
	}
	goVersion := runtime.Version()
	if b, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(b))
	}
	load := ""
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(data))[:3], " ")
	}
	fmt.Fprintf(out, "date: %s\ncpu: %d x %s\nmemory: %s\nkernel: Linux %s\ngo: %s\nload average at start: %s\n",
		time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), model, mem, kernel, goVersion, load)
}

// abTable compares the runs of ab.sh: KEY-a.N.json against KEY-b.N.json.
func abTable(dir string, out io.Writer) error {
	if m, err := os.ReadFile(filepath.Join(dir, "ab.txt")); err == nil {
		fmt.Fprintf(out, "```\n%s```\n\n", m)
	}
	fmt.Fprintln(out, "| load | A | B | server CPU / request A → B (median) |")
	fmt.Fprintln(out, "|---|---|---|---|")
	for _, k := range []struct{ key, show string }{
		{"ipxe", "rps"}, {"status1k", "rps"}, {"runtime", "rps"}, {"runtime304", "rps"}, {"system", "bps"}, {"kernel", "bps"},
	} {
		a, err := load(dir, k.key+"-a")
		if err != nil {
			return err
		}
		b, err := load(dir, k.key+"-b")
		if err != nil {
			return err
		}
		if len(a) == 0 && len(b) == 0 {
			continue
		}
		ma, mb := medianCPU(a), medianCPU(b)
		change := "—"
		if ma > 0 && mb > 0 {
			change = fmt.Sprintf("%.0f µs → %.0f µs (%+.0f%%)", ma, mb, (mb/ma-1)*100)
		}
		fmt.Fprintf(out, "| %s | %s | %s | %s |\n", k.key, cell(a, k.show), cell(b, k.show), change)
	}
	return nil
}

func medianCPU(rs []*result) float64 {
	v := collect(filterCPU(rs), func(r *result) float64 { return *r.ServerCPUPerReq })
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
