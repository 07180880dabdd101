package status

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
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
}

// Column header and rule of the table.
const (
	rowFormat = "%-20s %-20s %-25s %s"
	ruleWidth = 80
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
	bw := bufio.NewWriter(w)
	table(bw, "NODENAME", r.Nodes, r.UpdateIntervalSeconds, now, opts)
	if len(r.Unknown) > 0 {
		bw.WriteString("\n")
		table(bw, "UNKNOWN MAC", r.Unknown, r.UpdateIntervalSeconds, now, opts)
	}
	return bw.Flush()
}

func table(w *bufio.Writer, title string, rows []NodeStatus, interval int64, now time.Time, opts RenderOptions) {
	fmt.Fprintf(w, rowFormat+"\n", title, "STAGE", "SENT", "LASTSEEN (s)")
	w.WriteString(strings.Repeat("=", ruleWidth) + "\n")
	rows = sorted(rows, opts.Sort)
	for _, ns := range rows {
		stage, sent, last := dash(ns.Stage), dash(ns.Sent), "--"
		stale := false
		if ns.LastSeen > 0 {
			age := max(now.Unix()-ns.LastSeen, 0)
			last = strconv.FormatInt(age, 10)
			stale = interval > 0 && age > 2*interval
		}
		line := fmt.Sprintf(rowFormat, ns.Name, stage, sent, last)
		if opts.Color && stale {
			line = ansiRed + line + ansiReset
		}
		w.WriteString(line + "\n")
	}
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
