package status

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wwcluster/ww/server/nodeapi"
)

// Sort orders for Render.
const (
	SortName     = "name"     // by node name (the default)
	SortLastSeen = "lastseen" // longest unseen first: never seen, then oldest last seen
)

// ANSI escape sequences used by the table and the watch mode.
const (
	ansiRed       = "\x1b[31m"
	ansiReset     = "\x1b[0m"
	ANSIClearHome = "\x1b[H\x1b[2J"
)

// RenderOptions control the status table.
type RenderOptions struct {
	// Sort is SortName (default, also for "") or SortLastSeen.
	Sort string
	// Color marks stale nodes (seen, but not for over two update intervals) in red.
	Color bool
	// Now is the time ages are measured from; zero means the report's Now,
	// or the current time when the report has none.
	Now time.Time
	// Power, when not nil, adds a POWER column: the node's power state by
	// name ("--" for nodes not in it). Unknown MACs have no BMC.
	Power map[string]string
}

// Column widths of the table. The name column widens to the longest name
// of the report (node names may have 63 characters); STAGE and SENT values
// are shortened to their column (the full value is in --json), so every
// row lines up.
const (
	nameWidth  = 20
	stageWidth = 20
	sentWidth  = 25
	lastHeader = "LASTSEEN (s)"
)

// CheckSort returns an error for an unknown sort order.
func CheckSort(order string) error {
	switch order {
	case "", SortName, SortLastSeen:
		return nil
	}
	return fmt.Errorf("unknown sort order %q (want %q or %q)", order, SortName, SortLastSeen)
}

// Render writes the status table: the configured nodes, then — when there
// are any — the unknown MACs in a second table with the same columns.
// A node never seen shows "--" for stage, sent and last seen.
func Render(w io.Writer, r *Report, opts RenderOptions) error {
	if err := CheckSort(opts.Sort); err != nil {
		return err
	}
	now := opts.Now
	if now.IsZero() && r.Now != 0 {
		now = time.Unix(r.Now, 0)
	}
	if now.IsZero() {
		now = time.Now()
	}
	nw := nameWidth
	for _, rows := range [][]NodeStatus{r.Nodes, r.Unknown} {
		for _, ns := range rows {
			nw = max(nw, utf8.RuneCountInString(ns.Name))
		}
	}
	bw := bufio.NewWriter(w)
	table(bw, "NODENAME", r.Nodes, r.UpdateIntervalSeconds, now, opts, nw)
	if len(r.Unknown) > 0 {
		bw.WriteString("\n")
		opts.Power = nil
		table(bw, "UNKNOWN MAC", r.Unknown, r.UpdateIntervalSeconds, now, opts, nw)
	}
	return bw.Flush()
}

func table(w *bufio.Writer, title string, rows []NodeStatus, interval int64, now time.Time, opts RenderOptions, nw int) {
	row := func(name, stage, sent, last string) string {
		return fmt.Sprintf("%-*s %-*s %-*s %s", nw, name, stageWidth, stage, sentWidth, sent, last)
	}
	width := nw + stageWidth + sentWidth + 3 + len(lastHeader)
	if opts.Power != nil { // POWER last, LASTSEEN padded to its header
		plain := row
		row = func(name, stage, sent, last string) string {
			p := "POWER"
			if name != title {
				p = dash(opts.Power[name])
			}
			return fmt.Sprintf("%s%-*s %s", plain(name, stage, sent, ""), len(lastHeader), last, p)
		}
		width += len(" POWER")
	}
	w.WriteString(row(title, "STAGE", "SENT", lastHeader) + "\n")
	w.WriteString(strings.Repeat("=", width) + "\n")
	rows = sorted(rows, opts.Sort)
	for _, ns := range rows {
		stage, sent, last := clip(StageText(ns), stageWidth), clip(ShortSent(dash(ns.Sent)), sentWidth), "--"
		stale := false
		if ns.LastSeen > 0 {
			age := max(now.Unix()-ns.LastSeen, 0)
			last = strconv.FormatInt(age, 10)
			stale = interval > 0 && age > 2*interval
		}
		line := row(ns.Name, stage, sent, last)
		if opts.Color && stale {
			line = ansiRed + line + ansiReset
		}
		w.WriteString(line + "\n")
	}
}

// StageText is how the table shows a row's stage: the stage, followed by
// the node's download progress when it reported one, in percent and bytes
// ("IMAGE 41% 420M/1.0G": at most 20 characters, the column's width).
func StageText(ns NodeStatus) string {
	if ns.Progress == nil || ns.Stage == "" {
		return dash(ns.Stage)
	}
	return ns.Stage + " " + strconv.FormatInt(ns.Progress.Percent(), 10) + "% " +
		shortBytes(ns.Progress.Done) + "/" + shortBytes(ns.Progress.Total)
}

// shortBytes is n in at most 4 characters: 512, 9.5K, 420M, 1.2G, 35G.
func shortBytes(n int64) string {
	v, unit := float64(max(n, 0)), ""
	for _, u := range []string{"K", "M", "G", "T", "P"} {
		if v < 1000 {
			break
		}
		v, unit = v/1024, u
	}
	if unit != "" && v < 9.95 {
		return strconv.FormatFloat(v, 'f', 1, 64) + unit
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + unit
}

// ShortSent is how the table shows a SENT value: the boot file URL DHCP
// hands to iPXE (http://ADDR:PORT/ipxe/MAC) is "ipxe-script", a UEFI HTTP
// boot URL (…/ipxe-bin/FILE) is its file name, and any other URL its last
// path element.
func ShortSent(sent string) string {
	rest, ok := strings.CutPrefix(sent, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(sent, "https://")
	}
	if !ok {
		return sent
	}
	_, p, _ := strings.Cut(rest, "/")
	p = "/" + p
	switch {
	case strings.HasPrefix(p, string(nodeapi.IPXE)):
		return "ipxe-script"
	case strings.HasPrefix(p, nodeapi.IPXEBin):
		return strings.TrimPrefix(p, nodeapi.IPXEBin)
	}
	if i := strings.LastIndexByte(p, '/'); i >= 0 && i < len(p)-1 {
		return p[i+1:]
	}
	return sent
}

// clip shortens s to width characters, marking the cut with "…".
func clip(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

func dash(s string) string {
	if s == "" {
		return "--"
	}
	return s
}

// sorted returns rows in the given order without changing rows.
func sorted(rows []NodeStatus, order string) []NodeStatus {
	out := append([]NodeStatus(nil), rows...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if order == SortLastSeen && a.LastSeen != b.LastSeen {
			return a.LastSeen < b.LastSeen
		}
		return a.Name < b.Name
	})
	return out
}

// Filter keeps the rows (nodes and unknown MACs) whose name is in names and
// returns the names that matched nothing, in the order given.
func (r *Report) Filter(names []string) (missing []string) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	found := map[string]bool{}
	keep := func(rows []NodeStatus) []NodeStatus {
		out := rows[:0:0]
		for _, ns := range rows {
			if want[ns.Name] {
				out = append(out, ns)
				found[ns.Name] = true
			}
		}
		return out
	}
	r.Nodes = keep(r.Nodes)
	r.Unknown = keep(r.Unknown)
	for _, n := range names {
		if !found[n] {
			missing = append(missing, n)
		}
	}
	return missing
}
