package config

import (
	"bufio"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteNodesFile writes f as TOML in the plain form the fast parser reads:
// profiles, then nodes, each sorted by name; per entry its keys, then its
// tags and network device tables. Strings that need escapes get them
// (those entries are then read by the TOML decoder). Unset keys (nil) are
// left out; a list set to empty is written as [] (it overrides a
// profile's list). Writing costs a few hundred nanoseconds per key, so a
// file of 100,000 nodes is written in well under a second.
func WriteNodesFile(w io.Writer, f *File) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	e := encoder{w: bw}
	if f.Schema != 0 {
		e.line(SchemaKey + " = " + strconv.Itoa(f.Schema))
	}
	for _, kind := range []struct {
		name string
		m    map[string]*Entry
	}{{"profiles", f.Profiles}, {"nodes", f.Nodes}} {
		if len(kind.m) == 0 {
			continue
		}
		names := make([]string, 0, len(kind.m))
		for n := range kind.m {
			names = append(names, n)
		}
		sort.Strings(names)
		e.line("[" + kind.name + "]")
		for _, n := range names {
			e.entry(kind.name, n, kind.m[n])
		}
	}
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

// EncodeEntry is the text WriteNodesFile writes for one entry (kind
// "nodes" or "profiles"), a TOML document of its own.
func EncodeEntry(kind, name string, en *Entry) ([]byte, error) {
	var b strings.Builder
	bw := bufio.NewWriter(&b)
	e := encoder{w: bw}
	e.entry(kind, name, en)
	if e.err != nil {
		return nil, e.err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

type encoder struct {
	w   *bufio.Writer
	err error
}

func (e *encoder) line(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
	if e.err == nil {
		e.err = e.w.WriteByte('\n')
	}
}

func (e *encoder) fail(format string, a ...any) {
	if e.err == nil {
		e.err = fmt.Errorf(format, a...)
	}
}

func (e *encoder) entry(kind, name string, en *Entry) {
	head := kind + "." + e.key(name)
	e.line("[" + head + "]")
	if en == nil {
		return
	}
	e.list("profiles", en.Profiles)
	e.str("image", en.Image)
	e.str("kernel", en.Kernel)
	e.list("kernel_args", en.KernelArgs)
	e.list("network_drivers", en.NetworkDrivers)
	e.list("system_overlays", en.SystemOverlays)
	e.list("runtime_overlays", en.RuntimeOverlays)
	e.str("root", en.Root)
	e.str("boot", en.Boot)
	e.str("bootloader", en.Bootloader)
	e.str("asset_key", en.AssetKey)
	e.str("ipxe_template", en.IPXETemplate)
	e.boolean("discoverable", en.Discoverable)
	e.networkEntry(&en.NetworkEntry) // netdev_encode.go
	if len(en.Tags) > 0 {
		e.line("[" + head + ".tags]")
		keys := make([]string, 0, len(en.Tags))
		for k := range en.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := en.Tags[k]
			e.str(e.key(k), &v)
		}
	}
	devs := make([]string, 0, len(en.Network))
	for d, nd := range en.Network {
		if nd != nil {
			devs = append(devs, d)
		}
	}
	sort.Strings(devs)
	for _, d := range devs {
		nd := en.Network[d]
		e.line("[" + head + ".network." + e.key(d) + "]")
		e.str("hwaddr", nd.HWAddr)
		e.str("ipaddr", nd.IPAddr)
		e.str("netmask", nd.Netmask)
		e.str("gateway", nd.Gateway)
		e.boolean("primary", nd.Primary)
		e.devExtra(&nd.NetDevExtraEntry)
	}
	e.bmc(head, en.BMC)
}

func (e *encoder) str(key string, v *string) {
	if v != nil {
		e.line(key + " = " + e.quote(*v))
	}
}

func (e *encoder) boolean(key string, v *bool) {
	if v != nil {
		e.line(fmt.Sprintf("%s = %t", key, *v))
	}
}

func (e *encoder) list(key string, v []string) {
	if v == nil {
		return
	}
	var b strings.Builder
	b.WriteString(key + " = [")
	for i, s := range v {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.quote(s))
	}
	b.WriteByte(']')
	e.line(b.String())
}

// key is k as a TOML key: bare when it can be, else quoted.
func (e *encoder) key(k string) string {
	if k != "" && strings.IndexFunc(k, func(r rune) bool { return r >= utf8.RuneSelf || !isBareKeyChar(byte(r)) }) < 0 {
		return k
	}
	return e.quote(k)
}

// quote is s as a TOML basic string.
func (e *encoder) quote(s string) string {
	if !utf8.ValidString(s) {
		e.fail("%q is not valid UTF-8, which TOML cannot hold", s)
		return `""`
	}
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			plain = false
			break
		}
	}
	if plain {
		return `"` + s + `"`
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// SameEntry reports whether a and b say the same: equal values, where an
// empty or missing tags or network table and a nil device count as unset
// (WriteNodesFile leaves them out), but an empty list is not an unset one.
func SameEntry(a, b *Entry) bool {
	if a == nil {
		a = &Entry{}
	}
	if b == nil {
		b = &Entry{}
	}
	sameStr := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	sameBool := func(x, y *bool) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	sameList := func(x, y []string) bool {
		if (x == nil) != (y == nil) || len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !sameList(a.Profiles, b.Profiles) || !sameStr(a.Image, b.Image) || !sameStr(a.Kernel, b.Kernel) ||
		!sameList(a.KernelArgs, b.KernelArgs) || !sameList(a.NetworkDrivers, b.NetworkDrivers) || !sameList(a.SystemOverlays, b.SystemOverlays) ||
		!sameList(a.RuntimeOverlays, b.RuntimeOverlays) || !sameStr(a.Root, b.Root) || !sameStr(a.AssetKey, b.AssetKey) ||
		!sameStr(a.IPXETemplate, b.IPXETemplate) || !sameBool(a.Discoverable, b.Discoverable) || len(a.Tags) != len(b.Tags) ||
		!sameBMC(a.BMC, b.BMC) || !sameStr(a.Boot, b.Boot) || !sameStr(a.Bootloader, b.Bootloader) {
		return false
	}
	for k, v := range a.Tags {
		if w, ok := b.Tags[k]; !ok || w != v {
			return false
		}
	}
	devs := func(m map[string]*NetDevEntry) map[string]*NetDevEntry {
		out := make(map[string]*NetDevEntry, len(m))
		for k, v := range m {
			if v != nil {
				out[k] = v
			}
		}
		return out
	}
	if !reflect.DeepEqual(a.NetworkEntry, b.NetworkEntry) {
		return false
	}
	da, db := devs(a.Network), devs(b.Network)
	if len(da) != len(db) {
		return false
	}
	for k, x := range da {
		y, ok := db[k]
		if !ok || !sameStr(x.HWAddr, y.HWAddr) || !sameStr(x.IPAddr, y.IPAddr) || !sameStr(x.Netmask, y.Netmask) ||
			!sameStr(x.Gateway, y.Gateway) || !sameBool(x.Primary, y.Primary) ||
			!reflect.DeepEqual(x.NetDevExtraEntry, y.NetDevExtraEntry) {
			return false
		}
	}
	return true
}
