package nodeedit

import (
	"fmt"
	"io"
	"os"

	"github.com/wwcluster/ww/server/config"
)

// ImportRow is one node Import added (or would add): the line of the MAC
// list its MAC came from, and its address ("" when it has none).
type ImportRow struct {
	Line   int
	Name   string
	MAC    string
	IPAddr string
}

// Import pairs the MACs of the list in the file source ("-": read stdin),
// in list order, with names, in order, and adds one node each:
// the first MAC becomes the first name. f is applied to every node (f.Given
// must be set; NetDev names the device that gets the MAC); a node gets the
// "default" profile, when there is one, unless f gave --profile. With
// dryRun nothing is written.
func (e *Editor) Import(source string, stdin io.Reader, names []string, f *Fields, dryRun bool) ([]ImportRow, error) {
	r := stdin
	if source != "-" {
		fh, err := os.Open(source)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		r = fh
	}
	macs, err := ParseMACList(source, r)
	if err != nil {
		return nil, err
	}
	if len(macs) != len(names) {
		return nil, fmt.Errorf("%s has %d MACs but --names gives %d names: they must match one to one", source, len(macs), len(names))
	}
	entries, err := importEntries(macs, names, f)
	if err != nil {
		return nil, err
	}
	edit := e.Edit
	if dryRun {
		edit = e.DryRun
	}
	_, err = edit(func(t *Tree) error {
		for i, name := range names {
			if !f.Given("profile") && t.File(Profile, "default") != "" {
				entries[i].Profiles = []string{"default"}
			}
			if err := t.Add(Node, name, entries[i]); err != nil {
				return fmt.Errorf("%s:%d: %w", source, macs[i].Line, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rows := make([]ImportRow, len(names))
	for i, name := range names {
		rows[i] = ImportRow{Line: macs[i].Line, Name: name, MAC: macs[i].MAC}
		if d := entries[i].Network[f.NetDev]; d.IPAddr != nil {
			rows[i].IPAddr = *d.IPAddr
		}
	}
	return rows, nil
}

// importEntries builds the entry of each name before the tree is locked, so
// a bad flag fails without taking the lock.
func importEntries(macs []MACLine, names []string, f *Fields) ([]*config.Entry, error) {
	entries := make([]*config.Entry, len(names))
	for i := range names {
		e := &config.Entry{}
		if err := f.Apply(e, names[i], i); err != nil {
			return nil, err
		}
		if e.Network == nil {
			e.Network = map[string]*config.NetDevEntry{}
		}
		if e.Network[f.NetDev] == nil {
			e.Network[f.NetDev] = &config.NetDevEntry{}
		}
		mac := macs[i].MAC
		e.Network[f.NetDev].HWAddr = &mac
		entries[i] = e
	}
	return entries, nil
}
