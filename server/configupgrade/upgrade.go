// Package configupgrade is `wwserver upgrade`: it rewrites an older
// wwserver.toml or nodes.toml to the current schema (config.Schema) by
// editing lines of the text, so comments, order and layout stay. Each
// rewrite is checked to mean what the old file meant before anything is
// written; the old file is kept as FILE.old.
package configupgrade

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/wwcluster/ww/server/atomicfile"
	"github.com/wwcluster/ww/server/config"
)

// OldSuffix names the copy of a file as it was before its upgrade.
const OldSuffix = ".old"

// Change is one edit of a file, for --check and the summary.
type Change struct {
	Line int    // in the file as it is (before the upgrade)
	Key  string // dotted key
	What string
}

// File is the upgrade of one file: Changes empty when it is current.
type File struct {
	Path     string
	Schema   int // the schema it is written in
	Old, New []byte
	Mode     fs.FileMode
	Changes  []Change
}

// Plan reads root's wwserver.toml and nodes.toml and works out their
// upgrades; nothing is written. A file that is broken, or newer than this
// wwserver, is an error naming file, line and key.
func Plan(root string) ([]*File, error) {
	var out []*File
	for _, p := range []struct {
		name     string
		optional bool
		plan     func(*File) error
	}{{config.ServerFile, false, planServer}, {config.NodesFile, true, planNodes(root)}} {
		f, err := read(filepath.Join(root, p.name))
		if errors.Is(err, fs.ErrNotExist) && p.optional {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := p.plan(f); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func read(path string) (*File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &File{Path: path, Old: data, New: data, Mode: fi.Mode().Perm()}, nil
}

// Apply writes every planned file that changes: FILE.old first (refused
// when one exists: it is the copy of an earlier upgrade), then the new
// text atomically with the file's mode.
func Apply(files []*File) error {
	for _, f := range files {
		if len(f.Changes) == 0 {
			continue
		}
		old := f.Path + OldSuffix
		if _, err := os.Lstat(old); err == nil {
			return fmt.Errorf("%s exists (an earlier upgrade's copy): move it away and run upgrade again", old)
		}
		if err := atomicfile.WriteFile(old, f.Old, f.Mode); err != nil {
			return fmt.Errorf("keep %s: %w", old, err)
		}
		if err := atomicfile.WriteFile(f.Path, f.New, f.Mode); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	return nil
}

// schemaOf is the schema a file that decoded is written in.
func schemaOf(data []byte) int {
	var v struct {
		Schema int `toml:"schema"`
	}
	if _, err := toml.Decode(string(data), &v); err != nil || v.Schema == 0 {
		return config.SchemaLegacy
	}
	return v.Schema
}

func planServer(f *File) error {
	before, err := config.ParseServer(f.Path, f.Old)
	if err != nil {
		return fmt.Errorf("fix it first (wwserver check): %w", err)
	}
	f.Schema = schemaOf(f.Old)
	if f.Schema == config.Schema {
		return nil
	}
	if err := f.answerRSString(); err != nil {
		return err
	}
	f.setSchema()
	after, err := config.ParseServer(f.Path, f.New)
	if err != nil {
		return fmt.Errorf("upgraded %s does not load (a bug; nothing written): %w", f.Path, err)
	}
	after.Schema = before.Schema
	if !reflect.DeepEqual(before, after) {
		return fmt.Errorf("upgraded %s would mean something else (a bug; nothing written)", f.Path)
	}
	return nil
}

// planNodes upgrades nodes.toml, checked against the whole node database
// (nodes.toml with nodes.d/) resolving to the same nodes.
func planNodes(root string) func(*File) error {
	return func(f *File) error {
		srcs, err := config.NodesSources(root)
		if err != nil {
			return err
		}
		before, err := config.ParseNodesFiles(srcs)
		if err != nil {
			return fmt.Errorf("fix it first (wwserver check): %w", err)
		}
		f.Schema = schemaOf(f.Old)
		if f.Schema == config.Schema {
			return nil
		}
		f.setSchema()
		srcs[0].Data = f.New // NodesSources lists nodes.toml first
		after, err := config.ParseNodesFiles(srcs)
		if err != nil {
			return fmt.Errorf("upgraded %s does not load (a bug; nothing written): %w", f.Path, err)
		}
		if before.Hash != after.Hash {
			return fmt.Errorf("upgraded %s would mean something else (a bug; nothing written)", f.Path)
		}
		return nil
	}
}

var schemaLine = regexp.MustCompile(`^(\s*schema\s*=\s*)[0-9_+]+`)

// setSchema writes schema = config.Schema: on its line when the file has
// one, else before the first key or table (after the heading comments:
// top-level keys must come before any table).
func (f *File) setSchema() {
	lines := strings.SplitAfter(string(f.New), "\n")
	if n := config.KeyLine(f.New, config.SchemaKey); n > 0 && schemaLine.MatchString(lines[n-1]) {
		lines[n-1] = schemaLine.ReplaceAllString(lines[n-1], "${1}"+strconv.Itoa(config.Schema))
		f.Changes = append(f.Changes, Change{Line: n, Key: config.SchemaKey,
			What: fmt.Sprintf("schema %d → %d", f.Schema, config.Schema)})
		f.New = []byte(strings.Join(lines, ""))
		return
	}
	at := len(lines)
	for i, l := range lines {
		if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
			at = i
			break
		}
	}
	ins := fmt.Sprintf("# Format version of this file (wwserver upgrade rewrites older ones).\n%s = %d\n\n", config.SchemaKey, config.Schema)
	if at == len(lines) && len(lines) > 0 && !strings.HasSuffix(lines[at-1], "\n") {
		ins = "\n" + ins
	}
	f.Changes = append(f.Changes, Change{Line: at + 1, Key: config.SchemaKey,
		What: fmt.Sprintf("insert schema = %d (the file has no schema: %d)", config.Schema, config.SchemaLegacy)})
	f.New = []byte(strings.Join(lines[:at], "") + ins + strings.Join(lines[at:], ""))
}

const answerRS = "dhcp.answer_router_solicitations"

var answerRSLine = regexp.MustCompile(`^(\s*(?:dhcp\s*\.\s*)?answer_router_solicitations\s*=\s*)(true|false)(\s*(?:#.*)?\r?\n?)$`)

// answerRSString: schema 1 allowed dhcp.answer_router_solicitations as a
// boolean (before it had "auto"); schema 2 writes "true" or "false".
func (f *File) answerRSString() error {
	var v struct {
		DHCP map[string]any `toml:"dhcp"`
	}
	if _, err := toml.Decode(string(f.New), &v); err != nil {
		return err
	}
	if _, isBool := v.DHCP["answer_router_solicitations"].(bool); !isBool {
		return nil
	}
	lines := strings.SplitAfter(string(f.New), "\n")
	n := config.KeyLine(f.New, answerRS)
	if n == 0 || !answerRSLine.MatchString(lines[n-1]) {
		return &config.Error{File: f.Path, Line: n, Key: answerRS,
			Msg: `cannot rewrite this boolean in place: write "true" or "false" (quoted) by hand, then run upgrade again`}
	}
	m := answerRSLine.FindStringSubmatch(lines[n-1])
	lines[n-1] = answerRSLine.ReplaceAllString(lines[n-1], `${1}"${2}"${3}`)
	f.Changes = append(f.Changes, Change{Line: n, Key: answerRS, What: fmt.Sprintf(`%s → "%s" (a string since "auto")`, m[2], m[2])})
	f.New = []byte(strings.Join(lines, ""))
	return nil
}

// Summary is one line per change, "FILE:LINE: KEY: what", or that the file
// is current.
func (f *File) Summary() string {
	var b bytes.Buffer
	slices.SortStableFunc(f.Changes, func(x, y Change) int { return x.Line - y.Line })
	if len(f.Changes) == 0 {
		fmt.Fprintf(&b, "%s: schema %d, current\n", f.Path, f.Schema)
	}
	for _, c := range f.Changes {
		fmt.Fprintf(&b, "%s:%d: %s: %s\n", f.Path, c.Line, c.Key, c.What)
	}
	return b.String()
}
