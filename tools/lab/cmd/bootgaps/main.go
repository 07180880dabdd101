// Command bootgaps boots lab nodes with different kernel arguments, one QEMU
// at a time and alternating between them (the order rotates each round),
// and writes each boot's serial console to OUT/NODE-rROUND.log with two
// times per line: when its first byte and when its end arrived, in seconds
// from QEMU start. It is a tool to find where a boot's time goes (with
// printk.time=1 initcall_debug the kernel's own clock too) and to compare
// kernel_args A/B; it prints each boot's phases (kernel started, wwinit,
// exec init, booted) and per variant the median (min–max).
//
//	go build -o bin/bootgaps ./tools/lab/cmd/bootgaps
//	bin/bootgaps --firmware uefi --rounds 4 --out /tmp/gaps \
//	    --args 'quiet' --args 'quiet cryptomgr.notests'
//
// Each variant is a node whose kernel_args are the lab's (console=ttyS0
// panic=-1 no_timer_check) followed by the variant's, as make bench-boot
// boots the shipped ones. The server's artifacts are built before the
// first boot.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

type argList []string

func (a *argList) String() string     { return strings.Join(*a, " | ") }
func (a *argList) Set(s string) error { *a = append(*a, s); return nil }

func main() { os.Exit(run()) }

func run() int {
	var variants argList
	binDir := flag.String("bin", "bin", "directory with wwserver and wwclient")
	image := flag.String("image", "build/image", "image directory")
	firmware := flag.String("firmware", "uefi", "bios, uefi or uefi-ipxe")
	rounds := flag.Int("rounds", 1, "boots of each variant (alternating)")
	out := flag.String("out", "", "directory for the timed serial logs (required)")
	until := flag.String("until", "booted: node", "serial line that ends a boot")
	flag.Var(&variants, "args", "kernel_args of one variant (repeat for A/B); the lab's console=ttyS0 panic=-1 no_timer_check come first")
	flag.Parse()
	if *out == "" || len(variants) == 0 {
		flag.Usage()
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	paths, err := lab.FindPaths(*binDir, *image)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := lab.New(ctx, lab.Options{Paths: paths, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Close()
	var nodes []lab.Node
	for i, v := range variants {
		n := lab.LabNode(i + 1)
		n.KernelArgs = append(lab.DefaultKernelArgs(), strings.Fields(v)...)
		nodes = append(nodes, n)
	}
	if err := l.WriteTree(ctx, lab.TreeOptions{Nodes: nodes, UpdateInterval: "60s"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := l.StartServer(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Build every node's artifacts before the first boot (as make
	// bench-boot does): the first boot would otherwise pay for them.
	for _, n := range nodes {
		for _, p := range []string{"/ipxe/", "/kernel/", "/modules/", "/overlay/system/"} {
			if err := warm(ctx, l, p+n.MAC); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	times := make([][]time.Duration, len(nodes))
	for r := range *rounds {
		for k := range nodes {
			i := (k + r) % len(nodes)
			n := nodes[i]
			name := fmt.Sprintf("%s-r%d", n.Name, r)
			marks, err := boot(ctx, l, n, lab.Firmware(*firmware), name, *until, filepath.Join(*out, name+".log"))
			if err != nil {
				fmt.Fprintln(os.Stderr, name, err)
				return 1
			}
			d := marks[len(marks)-1]
			times[i] = append(times[i], d)
			fmt.Printf("%s variant %d: %.2f s; %s (load %s)\n", name, i, d.Seconds(), phases(marks), load())
		}
	}
	for i, ts := range times {
		s := slices.Clone(ts)
		slices.Sort(s)
		fmt.Printf("variant %d [%s]: median %.2f s (%.2f–%.2f) n=%d\n", i, variants[i], s[len(s)/2].Seconds(), s[0].Seconds(), s[len(s)-1].Seconds(), len(s))
	}
	return 0
}

func warm(ctx context.Context, l *lab.Lab, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.ServerURL()+path, nil)
	if err != nil {
		return err
	}
	resp, err := l.HTTPClient().Do(req)
	if err != nil {
		return fmt.Errorf("warm %s: %w", path, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("warm %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("warm %s: %s", path, resp.Status)
	}
	return nil
}

// markers are the lines whose arrival splits a boot into phases: the loader
// starts the kernel, the kernel runs wwinit, wwinit execs the image's init.
var markers = []string{"wwserver: starting the kernel", "wwinit: starting", "wwinit: exec /sbin/init"}

// phases formats the arrival of each marker and the until line.
func phases(marks []time.Duration) string {
	names := []string{"kernel started", "wwinit", "exec init", "until"}
	var b strings.Builder
	for i, m := range marks {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.2f", names[i], m.Seconds())
	}
	return b.String()
}

func load() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// boot starts one VM and copies its serial log to path through a
// timedLog, polling it every 5 ms. It returns when each of markers and then
// the until line ended (0 for a marker that did not show).
func boot(ctx context.Context, l *lab.Lab, n lab.Node, fw lab.Firmware, name, until, path string) ([]time.Duration, error) {
	vm, err := l.StartVM(ctx, lab.VMOptions{Name: name, MAC: n.MAC, Firmware: fw})
	if err != nil {
		return nil, err
	}
	defer vm.Stop(5 * time.Second)
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tl := newTimedLog(f, until)
	var off int64
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		var data []byte
		if in, err := os.Open(vm.SerialLog); err == nil {
			_, _ = in.Seek(off, io.SeekStart)
			data, _ = io.ReadAll(in)
			in.Close()
			off += int64(len(data))
		}
		if tl.feed(data, time.Since(vm.Started)) {
			return tl.marks, nil
		}
		if vm.Exited() {
			return nil, fmt.Errorf("QEMU exited; serial %s", vm.SerialLog)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("no %q within 4 min", until)
}

// timedLog writes a console's lines to w, each prefixed with the time its
// first byte and its end were read, and notes when each of markers and the
// until line ended (marks; the last is until's).
type timedLog struct {
	w       io.Writer
	until   string
	partial []byte        // bytes of the line not yet ended
	lineAt  time.Duration // when partial's first byte was read
	marks   []time.Duration
}

func newTimedLog(w io.Writer, until string) *timedLog {
	return &timedLog{w: w, until: until, marks: make([]time.Duration, len(markers)+1)}
}

// feed takes the bytes read at time at; true once the until line ended.
func (t *timedLog) feed(data []byte, at time.Duration) bool {
	if len(t.partial) == 0 && len(data) > 0 {
		t.lineAt = at
	}
	t.partial = append(t.partial, data...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			return false
		}
		line := strings.TrimRight(string(t.partial[:i]), "\r")
		t.partial = t.partial[i+1:]
		fmt.Fprintf(t.w, "%8.3f %8.3f %s\n", t.lineAt.Seconds(), at.Seconds(), line)
		t.lineAt = at // the rest of partial came with this read
		for i, m := range markers {
			if t.marks[i] == 0 && strings.Contains(line, m) {
				t.marks[i] = at
			}
		}
		if strings.Contains(line, t.until) {
			t.marks[len(markers)] = at
			return true
		}
	}
}
