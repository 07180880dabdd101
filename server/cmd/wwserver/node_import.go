package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostlist"
	"github.com/wwcluster/ww/server/nodeedit"
)

// maxMACListSize bounds the vendor file read into memory.
const maxMACListSize = 16 << 20

// macLine is one MAC of a vendor list and the line it was on.
type macLine struct {
	mac  string
	line int
}

// parseMACList reads a vendor MAC list in rack order: one MAC per line, or
// CSV (',' ';' or tab separated) with a column whose header names a MAC
// ("mac", "MAC Address", "hwaddr" …) or, without a header, the first column
// holding a MAC. Blank lines and lines starting with '#' are skipped.
func parseMACList(name string, r io.Reader) ([]macLine, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxMACListSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxMACListSize {
		return nil, fmt.Errorf("%s: larger than %d MiB", name, maxMACListSize>>20)
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comma = detectComma(data)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	col := -1
	var out []macLine
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if col < 0 {
			col = macColumn(rec)
			if col < 0 {
				if col = headerColumn(rec); col < 0 {
					return nil, fmt.Errorf("%s:%d: no MAC address and no column named mac or hwaddr in %q", name, line, strings.Join(rec, string(cr.Comma)))
				}
				continue // a header
			}
		}
		if col >= len(rec) {
			return nil, fmt.Errorf("%s:%d: no column %d", name, line, col+1)
		}
		mac, err := config.NormalizeMAC(strings.TrimSpace(rec[col]))
		if err == nil {
			err = config.CheckUnicastMAC(mac)
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if prev, dup := seen[mac]; dup {
			return nil, fmt.Errorf("%s:%d: MAC %s is also on line %d", name, line, mac, prev)
		}
		seen[mac] = line
		out = append(out, macLine{mac: mac, line: line})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no MAC addresses", name)
	}
	return out, nil
}

// detectComma picks the separator of the first data line.
func detectComma(data []byte) rune {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		for _, c := range []rune{',', ';', '\t'} {
			if strings.ContainsRune(l, c) {
				return c
			}
		}
		break
	}
	return ','
}

func macColumn(rec []string) int {
	for i, f := range rec {
		if _, err := config.NormalizeMAC(strings.TrimSpace(f)); err == nil {
			return i
		}
	}
	return -1
}

func headerColumn(rec []string) int {
	for i, f := range rec {
		h := strings.ToLower(strings.TrimSpace(f))
		if strings.Contains(h, "mac") || strings.Contains(h, "hwaddr") {
			return i
		}
	}
	return -1
}

func newNodeImportCmd() *cobra.Command {
	var (
		root, names string
		dryRun      bool
		f           entryFlags
	)
	cmd := &cobra.Command{
		Use:   "import FILE --names 'c[001-100]'",
		Short: "Add nodes from a vendor MAC list in rack order (one MAC per line, or CSV with a MAC column)",
		Long: `import pairs the MACs of FILE ("-" for stdin), in file order, with the names of --names,
in hostlist order, and adds one node each: the first MAC becomes the first name. --ipaddr
counts up the same way. --dry-run prints the table and writes nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if names == "" {
				return errors.New("--names is required (e.g. --names 'c[001-100]')")
			}
			if cmd.Flags().Changed("hwaddr") {
				return errors.New("--hwaddr: the MACs come from FILE")
			}
			list, err := expandNames(names)
			if err != nil {
				return err
			}
			var in io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				fh, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer fh.Close()
				in = fh
			}
			macs, err := parseMACList(args[0], in)
			if err != nil {
				return err
			}
			if len(macs) != len(list) {
				return fmt.Errorf("%s has %d MACs but --names gives %d names: they must match one to one", args[0], len(macs), len(list))
			}
			entries := make([]*config.Entry, len(list))
			for i := range list {
				e := &config.Entry{}
				if err := f.apply(cmd, e, list[i], i); err != nil {
					return err
				}
				if e.Network == nil {
					e.Network = map[string]*config.NetDevEntry{}
				}
				if e.Network[f.netdev] == nil {
					e.Network[f.netdev] = &config.NetDevEntry{}
				}
				mac := macs[i].mac
				e.Network[f.netdev].HWAddr = &mac
				entries[i] = e
			}
			edit := nodeedit.New(root).Edit
			if dryRun {
				edit = nodeedit.New(root).DryRun
			}
			_, err = edit(func(t *nodeedit.Tree) error {
				for i, name := range list {
					if !cmd.Flags().Changed("profile") && t.File(nodeedit.Profile, "default") != "" {
						entries[i].Profiles = []string{"default"}
					}
					if err := t.Add(nodeedit.Node, name, entries[i]); err != nil {
						return fmt.Errorf("%s:%d: %w", args[0], macs[i].line, err)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LINE\tNAME\tMAC\tIPADDR")
			for i, name := range list {
				ip := "-"
				if d := entries[i].Network[f.netdev]; d.IPAddr != nil {
					ip = *d.IPAddr
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", macs[i].line, name, macs[i].mac, ip)
			}
			_ = tw.Flush()
			if dryRun {
				fmt.Fprintf(cmd.OutOrStdout(), "dry run: %d node(s) would be added; nothing written\n", len(list))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d node(s): %s\n", len(list), hostlist.Compress(list))
			return nil
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().StringVar(&names, "names", "", "node names in rack order (hostlist), one per MAC")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the table, write nothing")
	f.add(cmd, nodeedit.Node)
	return cmd
}
