package config

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// fastParseNodes decodes a nodes file written in the plain form wwserver
// writes and people usually write: one table header or one "key = value"
// per line, comments, bare or simply quoted keys, strings without escapes,
// one-line string arrays, booleans. For such a file it returns the same
// File as the TOML decoder, about ten times faster (a tree of 100,000
// nodes is read on every CLI edit, check and server reload). Anything else
// -- an escape, an inline table, a multi-line array, a key it does not
// know, a table or key given twice, any TOML error -- returns ok=false,
// and the caller decodes the file with the TOML decoder, which also
// produces the error messages. FuzzFastParse holds it to that.
func fastParseNodes(data []byte) (f *File, ok bool) {
	if !utf8.Valid(data) || bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, false
	}
	f = &File{}
	p := fastParser{file: f}
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = bytes.TrimSuffix(data[:i], []byte("\r")), data[i+1:]
		} else {
			line, data = data, nil
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return nil, false // a CR not ending a line
		}
		if !p.line(string(line)) {
			return nil, false
		}
	}
	return f, true
}

// fastParser is the state of fastParseNodes. The tables of one entry must
// come together (as wwserver writes them): an entry whose tables are
// interleaved with another's is left to the TOML decoder, so a table given
// twice is caught by looking at the current entry only.
type fastParser struct {
	file *File
	// The current entry and the tables of it seen so far.
	curKind, curName string
	curEntry         *Entry
	curTables        []string // "", "tags", "network", "network.DEV"
	topSeen          [2]bool  // [nodes], [profiles]
	// The table "key = value" lines go to:
	entry *Entry       // [nodes.X] or [profiles.X]
	sub   string       // "", "tags", "network", "dev"
	dev   *NetDevEntry // [nodes.X.network.DEV]
	keys  []string     // keys set in this table
}

func (p *fastParser) line(s string) bool {
	s = strings.TrimLeft(s, " \t")
	if s == "" || s[0] == '#' {
		return restIsComment(s)
	}
	if s[0] == '[' {
		return p.header(s)
	}
	return p.keyValue(s)
}

// header handles "[a.b.c]" (with an optional trailing comment).
func (p *fastParser) header(s string) bool {
	if strings.HasPrefix(s, "[[") {
		return false
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return false
	}
	// A quoted key may hold ']': only plain quoted keys are accepted, so
	// find the real end by parsing the keys.
	keys, rest, ok := parseDottedKey(s[1:])
	if !ok || !strings.HasPrefix(rest, "]") || !restIsComment(rest[1:]) {
		return false
	}
	p.keys = p.keys[:0]
	p.entry, p.dev, p.sub = nil, nil, ""
	if len(keys) == 0 || (keys[0] != "nodes" && keys[0] != "profiles") {
		return false
	}
	if len(keys) == 1 {
		return p.topHeader(keys[0])
	}
	return p.entryHeader(keys)
}

// topHeader is [nodes] or [profiles]: the map exists even when empty, as
// the decoder makes it. Its key-value lines would be entries; none are
// accepted.
func (p *fastParser) topHeader(kind string) bool {
	top := &p.topSeen[0]
	if kind == "profiles" {
		top = &p.topSeen[1]
	}
	if *top {
		return false // a table defined twice: a TOML error
	}
	*top = true
	p.entryMap(kind)
	p.curKind, p.curName = "", ""
	return true
}

// entryHeader is a table of one node or profile: [nodes.N], [nodes.N.tags],
// [nodes.N.network] or [nodes.N.network.DEV]. An entry's tables must come
// together, each once.
func (p *fastParser) entryHeader(keys []string) bool {
	var table string // which table of the entry
	switch {
	case len(keys) == 2:
	case len(keys) == 3 && (keys[2] == "tags" || keys[2] == "network" || keys[2] == "bmc"):
		table = keys[2]
	case len(keys) == 4 && keys[2] == "network":
		table = "network." + keys[3]
	default:
		return false
	}
	if keys[0] != p.curKind || keys[1] != p.curName {
		m := p.entryMap(keys[0])
		if _, seen := m[keys[1]]; seen {
			return false // the entry's tables are not together
		}
		p.curKind, p.curName, p.curTables = keys[0], keys[1], p.curTables[:0]
		p.curEntry = &Entry{}
		m[keys[1]] = p.curEntry
	}
	for _, t := range p.curTables {
		if t == table {
			return false // a table defined twice: a TOML error
		}
	}
	p.curTables = append(p.curTables, table)
	return p.enterTable(keys)
}

// enterTable points the parser at the table key-value lines now fill.
func (p *fastParser) enterTable(keys []string) bool {
	e := p.curEntry
	switch {
	case len(keys) == 2:
		p.entry = e
	case len(keys) == 3 && keys[2] == "tags":
		p.entry, p.sub = e, "tags"
		if e.Tags == nil {
			e.Tags = map[string]string{}
		}
	case len(keys) == 3 && keys[2] == "bmc":
		p.entry, p.sub = e, "bmc"
		e.BMC = &BMCEntry{}
	case len(keys) == 3 && keys[2] == "network":
		p.entry, p.sub = e, "network"
		if e.Network == nil {
			e.Network = map[string]*NetDevEntry{}
		}
	case len(keys) == 4 && keys[2] == "network":
		if e.Network == nil {
			e.Network = map[string]*NetDevEntry{}
		}
		d := e.Network[keys[3]]
		if d == nil {
			d = &NetDevEntry{}
			e.Network[keys[3]] = d
		}
		p.entry, p.sub, p.dev = e, "dev", d
	default:
		return false
	}
	return true
}

// entryMap returns (creating) the file's nodes or profiles map.
func (p *fastParser) entryMap(kind string) map[string]*Entry {
	m := &p.file.Nodes
	if kind == "profiles" {
		m = &p.file.Profiles
	}
	if *m == nil {
		*m = map[string]*Entry{}
	}
	return *m
}

// keyValue handles "key = value" in the current table.
func (p *fastParser) keyValue(s string) bool {
	keys, rest, ok := parseDottedKey(s)
	if ok && len(keys) == 1 && p.entry == nil && p.curKind == "" && p.topSeen == [2]bool{} {
		return fastSchema(p.file, keys[0], rest) // the one top-level key (schema.go)
	}
	if !ok || len(keys) != 1 || p.entry == nil {
		return false
	}
	key := keys[0]
	rest = strings.TrimLeft(rest, " \t")
	if !strings.HasPrefix(rest, "=") {
		return false
	}
	rest = strings.TrimLeft(rest[1:], " \t")
	for _, k := range p.keys {
		if k == key {
			return false // a key given twice: a TOML error
		}
	}
	p.keys = append(p.keys, key)
	switch p.sub {
	case "tags":
		v, ok := stringValue(rest)
		if !ok {
			return false
		}
		p.entry.Tags[key] = v
		return true
	case "network":
		return false // devices are tables, not values
	case "dev":
		return p.devValue(key, rest)
	case "bmc":
		return bmcValue(p.entry.BMC, key, rest)
	}
	return p.entryValue(key, rest)
}

// devValue sets one key of the current network device.
func (p *fastParser) devValue(key, rest string) bool {
	if key == "primary" {
		b, ok := boolValue(rest)
		if !ok {
			return false
		}
		p.dev.Primary = &b
		return true
	}
	v, ok := stringValue(rest)
	if !ok {
		return false
	}
	switch key {
	case "hwaddr":
		p.dev.HWAddr = &v
	case "ipaddr":
		p.dev.IPAddr = &v
	case "netmask":
		p.dev.Netmask = &v
	case "gateway":
		p.dev.Gateway = &v
	default:
		return false
	}
	return true
}

// entryValue sets one key of the current node or profile; an unknown key
// is left to the full parser (false).
func (p *fastParser) entryValue(key, rest string) bool {
	e := p.entry
	switch key {
	case "profiles", "kernel_args", "network_drivers", "system_overlays", "runtime_overlays":
		list, ok := arrayValue(rest)
		if !ok {
			return false
		}
		switch key {
		case "profiles":
			e.Profiles = list
		case "kernel_args":
			e.KernelArgs = list
		case "network_drivers":
			e.NetworkDrivers = list
		case "system_overlays":
			e.SystemOverlays = list
		case "runtime_overlays":
			e.RuntimeOverlays = list
		}
		return true
	case "discoverable":
		b, ok := boolValue(rest)
		if !ok {
			return false
		}
		e.Discoverable = &b
		return true
	}
	v, ok := stringValue(rest)
	if !ok {
		return false
	}
	switch key {
	case "image":
		e.Image = &v
	case "kernel":
		e.Kernel = &v
	case "root":
		e.Root = &v
	case "boot":
		e.Boot = &v
	case "bootloader":
		e.Bootloader = &v
	case "asset_key":
		e.AssetKey = &v
	case "ipxe_template":
		e.IPXETemplate = &v
	default:
		return false
	}
	return true
}

// parseDottedKey reads "a.b.c" (bare keys and "quoted" keys without
// escapes, no spaces around the dots) and returns the rest of s.
func parseDottedKey(s string) (keys []string, rest string, ok bool) {
	for {
		var k string
		switch {
		case s == "":
			return nil, "", false
		case s[0] == '"':
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, "", false
			}
			k = s[1 : 1+end]
			if strings.ContainsAny(k, "\\") || hasControl(k) {
				return nil, "", false
			}
			s = s[2+end:]
		default:
			i := 0
			for i < len(s) && isBareKeyChar(s[i]) {
				i++
			}
			if i == 0 {
				return nil, "", false
			}
			k, s = s[:i], s[i:]
		}
		keys = append(keys, k)
		if s == "" || s[0] != '.' {
			return keys, s, true
		}
		s = s[1:]
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// hasControl reports a character TOML does not allow in a string as is.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// restIsComment accepts what may follow a value: spaces, then nothing or
// a comment.
func restIsComment(s string) bool {
	s = strings.TrimLeft(s, " \t")
	return s == "" || s[0] == '#' && !hasControl(s[1:])
}

// stringValue reads a "basic" string without escapes or a 'literal'
// string, then the end of the line.
func stringValue(s string) (string, bool) {
	v, rest, ok := stringToken(s)
	if !ok || !restIsComment(rest) {
		return "", false
	}
	return v, true
}

func stringToken(s string) (v, rest string, ok bool) {
	if len(s) < 2 || (s[0] != '"' && s[0] != '\'') || strings.HasPrefix(s, `"""`) || strings.HasPrefix(s, "'''") {
		return "", "", false
	}
	q := s[0]
	end := strings.IndexByte(s[1:], q)
	if end < 0 {
		return "", "", false
	}
	v = s[1 : 1+end]
	if q == '"' && strings.IndexByte(v, '\\') >= 0 || hasControl(v) {
		return "", "", false
	}
	return v, s[2+end:], true
}

func boolValue(s string) (bool, bool) {
	switch {
	case strings.HasPrefix(s, "true") && restIsComment(s[4:]):
		return true, true
	case strings.HasPrefix(s, "false") && restIsComment(s[5:]):
		return false, true
	}
	return false, false
}

// arrayValue reads a one-line array of strings: [], ["a"], ["a", 'b',].
func arrayValue(s string) ([]string, bool) {
	if !strings.HasPrefix(s, "[") {
		return nil, false
	}
	s = strings.TrimLeft(s[1:], " \t")
	list := []string{}
	for {
		if strings.HasPrefix(s, "]") {
			return list, restIsComment(s[1:])
		}
		v, rest, ok := stringToken(s)
		if !ok {
			return nil, false
		}
		list = append(list, v)
		s = strings.TrimLeft(rest, " \t")
		switch {
		case strings.HasPrefix(s, ","):
			s = strings.TrimLeft(s[1:], " \t")
		case strings.HasPrefix(s, "]"):
		default:
			return nil, false
		}
	}
}
