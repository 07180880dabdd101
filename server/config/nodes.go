package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/wwcluster/ww/server/nodeapi"
)

// NetDev is one network device of a node.
type NetDev struct {
	Name    string `json:"name"`
	HWAddr  string `json:"hwaddr"` // lower-case, colon-separated
	IPAddr  string `json:"ipaddr,omitempty"`
	Netmask string `json:"netmask,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Primary bool   `json:"primary"`
	NetDevExtra
}

// Node is a node with its profiles merged in; resolved once per config load.
type Node struct {
	Name            string   `json:"name"`
	Profiles        []string `json:"profiles,omitempty"`
	Image           string   `json:"image"`
	Kernel          string   `json:"kernel,omitempty"`
	KernelArgs      []string `json:"kernel_args,omitempty"`
	NetworkDrivers  []string `json:"network_drivers,omitempty"` // two-stage stage 1's modules (netdrivers.go); empty: all
	SystemOverlays  []string `json:"system_overlays"`
	RuntimeOverlays []string `json:"runtime_overlays"`
	Root            string   `json:"root"`
	Boot            string   `json:"boot"` // BootInitrd or BootTwoStage
	// Bootloader is the node's "ipxe" or "grub" as written on the node or
	// its profiles; "" means the server's default (Server.LoaderFor).
	Bootloader   string            `json:"bootloader,omitempty"`
	AssetKey     string            `json:"-"`
	IPXETemplate string            `json:"ipxe_template,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	Network      []NetDev          `json:"network"` // primary first, then by name
	NetworkConf
	// Discoverable nodes without a primary MAC are given to the next unknown
	// MAC that asks for an iPXE script (see server/nodeedit).
	Discoverable bool `json:"discoverable,omitempty"`
	// File is the config file the node is defined in (nodes.toml or nodes.d/X.toml).
	File string `json:"-"`
	// BMC: power and console (nil: none); never the password (bmc.go).
	BMC *BMC `json:"bmc,omitempty"`
}

// Primary returns the node's primary network device (zero value if none).
func (n *Node) Primary() NetDev {
	if len(n.Network) == 0 {
		return NetDev{}
	}
	return n.Network[0]
}

// HasAssetKey reports whether the node requires an asset key.
func (n *Node) HasAssetKey() bool { return n.AssetKey != "" }

// PublicNode is a node as other nodes' overlays may see it (templates'
// .Nodes): every field of Node except the secrets (AssetKey). A system
// overlay is served to anyone who knows a MAC, so nothing rendered from
// .Nodes may hold another node's key.
type PublicNode struct {
	Name            string            `json:"name"`
	Profiles        []string          `json:"profiles,omitempty"`
	Image           string            `json:"image"`
	Kernel          string            `json:"kernel,omitempty"`
	KernelArgs      []string          `json:"kernel_args,omitempty"`
	NetworkDrivers  []string          `json:"network_drivers,omitempty"`
	SystemOverlays  []string          `json:"system_overlays"`
	RuntimeOverlays []string          `json:"runtime_overlays"`
	Root            string            `json:"root"`
	Boot            string            `json:"boot"`
	Bootloader      string            `json:"bootloader,omitempty"`
	IPXETemplate    string            `json:"ipxe_template,omitempty"`
	Tags            map[string]string `json:"tags,omitempty"`
	Network         []NetDev          `json:"network"`
	NetworkConf
	Discoverable bool   `json:"discoverable,omitempty"`
	File         string `json:"-"`
	BMC          *BMC   `json:"bmc,omitempty"`
}

// Primary returns the node's primary network device (zero value if none).
func (n *PublicNode) Primary() NetDev {
	if len(n.Network) == 0 {
		return NetDev{}
	}
	return n.Network[0]
}

// Public returns n without its secrets. Slices and maps are shared: both
// are read-only once loaded.
func (n *Node) Public() *PublicNode {
	return &PublicNode{Name: n.Name, Profiles: n.Profiles, Image: n.Image, Kernel: n.Kernel,
		KernelArgs: n.KernelArgs, NetworkDrivers: n.NetworkDrivers, SystemOverlays: n.SystemOverlays, RuntimeOverlays: n.RuntimeOverlays,
		Root: n.Root, Boot: n.Boot, IPXETemplate: n.IPXETemplate, Tags: n.Tags, Network: n.Network,
		NetworkConf: n.NetworkConf, Discoverable: n.Discoverable, File: n.File, Bootloader: n.Bootloader, BMC: n.BMC}
}

// Nodes is the resolved node database of one config generation.
type Nodes struct {
	List   []*Node          // sorted by name
	Public []*PublicNode    // List without secrets, same order: templates' .Nodes
	ByName map[string]*Node // name → node
	ByMAC  map[string]*Node // normalised MAC → node
	ByIP   map[string]*Node // any configured address → node
	// Undiscovered are the discoverable nodes still without a MAC, by name.
	Undiscovered []*Node
	// AnyGRUB: some node sets bootloader = "grub" (itself or by profile).
	AnyGRUB bool
	// Hash identifies this generation's content (nodes and profiles).
	Hash string
	// bmcPasswords are the inline BMC passwords by node name, kept out of
	// Node (template data); see BMCPassword.
	bmcPasswords map[string]string
}

// Entry is one [nodes.X] or [profiles.X] table as written (nil: not set).
// server/nodeedit writes these; the loader merges and validates them.
type Entry struct {
	Profiles        []string                `toml:"profiles"`
	Image           *string                 `toml:"image"`
	Kernel          *string                 `toml:"kernel"`
	KernelArgs      []string                `toml:"kernel_args"`
	NetworkDrivers  []string                `toml:"network_drivers"`
	SystemOverlays  []string                `toml:"system_overlays"`
	RuntimeOverlays []string                `toml:"runtime_overlays"`
	Root            *string                 `toml:"root"`
	Boot            *string                 `toml:"boot"`
	Bootloader      *string                 `toml:"bootloader"`
	AssetKey        *string                 `toml:"asset_key"`
	IPXETemplate    *string                 `toml:"ipxe_template"`
	Discoverable    *bool                   `toml:"discoverable"`
	Tags            map[string]string       `toml:"tags"`
	Network         map[string]*NetDevEntry `toml:"network"`
	BMC             *BMCEntry               `toml:"bmc"`
	NetworkEntry
}

// NetDevEntry is one [nodes.X.network.DEV] table as written.
type NetDevEntry struct {
	HWAddr  *string `toml:"hwaddr"`
	IPAddr  *string `toml:"ipaddr"`
	Netmask *string `toml:"netmask"`
	Gateway *string `toml:"gateway"`
	Primary *bool   `toml:"primary"`
	NetDevExtraEntry
}

// File is the content of one nodes file as written.
type File struct {
	Schema   int               `toml:"schema,omitempty"` // 0: not written (SchemaLegacy); see schema.go
	Profiles map[string]*Entry `toml:"profiles,omitempty"`
	Nodes    map[string]*Entry `toml:"nodes,omitempty"`
}

// Source is one nodes file to load: its path (for error messages) and content.
type Source struct {
	Path string
	Data []byte
}

// Root modes for the node's root filesystem (wwroot= on the kernel command line).
const (
	RootTmpfs     = nodeapi.RootTmpfs
	RootInitramfs = nodeapi.RootInitramfs
)

// Boot modes: how the node gets its image.
const (
	// BootInitrd: iPXE loads the image as one gzip cpio initrd, which the
	// kernel unpacks (bounded by iPXE's and the firmware's memory, and by
	// the kernel's gzip unpacker: ~3-4 GB).
	BootInitrd = "initrd"
	// BootTwoStage: iPXE loads the kernel, its network drivers and the
	// overlays; wwclient (/init) fetches the chunked image over HTTP into
	// the tmpfs root (wwimage= on the kernel command line).
	BootTwoStage = "twostage"
)

// TwoStage reports whether the node boots in two stages (the default for
// iPXE nodes with a tmpfs root).
func (n *Node) TwoStage() bool { return n.Boot == BootTwoStage }

// LoadNodes reads and resolves one nodes file at path.
func LoadNodes(path string) (*Nodes, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read nodes config: %w", err)
	}
	return ParseNodes(path, data)
}

// ParseNodes parses nodes.toml content; path is used in error messages.
func ParseNodes(path string, data []byte) (*Nodes, error) {
	return ParseNodesFiles([]Source{{Path: path, Data: data}})
}

// NodesSources reads the tree's nodes files: nodes.toml, then every
// nodes.d/*.toml in name order (nodes.d may be missing).
func NodesSources(root string) ([]Source, error) {
	paths := []string{filepath.Join(root, NodesFile)}
	more, err := filepath.Glob(filepath.Join(root, NodesDir, "*.toml"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NodesDir, err)
	}
	sort.Strings(more)
	paths = append(paths, more...)
	srcs := make([]Source, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read nodes config: %w", err)
		}
		srcs = append(srcs, Source{Path: p, Data: data})
	}
	return srcs, nil
}

// LoadNodesTree reads and resolves the tree's nodes.toml and nodes.d/*.toml.
func LoadNodesTree(root string) (*Nodes, error) {
	srcs, err := NodesSources(root)
	if err != nil {
		return nil, err
	}
	return ParseNodesFiles(srcs)
}

// origin is where an entry is written: its file and that file's key
// lines, found only when an error needs one.
type origin struct {
	path string
	data []byte // nil: not known (a file changed in memory)
	loc  *locator
}

func (o *origin) line(key string) int {
	if o.data == nil {
		return 0
	}
	if o.loc == nil {
		o.loc = newLocator(o.data)
	}
	return o.loc.line(key)
}

// DecodeNodesFile decodes one nodes file without validating it against
// the others (see ResolveNodes). Errors (TOML syntax, unknown keys) name
// the file and line; several come as *Errors.
func DecodeNodesFile(src Source) (*File, error) {
	var errs errList
	f := decodeNodesFile(src, &origin{path: src.Path, data: src.Data}, &errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return f, nil
}

// decodeNodesFile decodes src with the fast parser, or with the TOML
// decoder when the fast parser cannot read it; errors go to errs (nil
// File: it did not parse).
func decodeNodesFile(src Source, o *origin, errs *errList) *File {
	if f, ok := fastParseNodes(src.Data); ok {
		if msg := schemaProblem(f.Schema, f.Schema != 0); msg != "" {
			errs.add(&Error{File: src.Path, Line: o.line(SchemaKey), Key: SchemaKey, Msg: msg})
			return nil
		}
		return f
	}
	var f File
	md, err := toml.NewDecoder(bytes.NewReader(src.Data)).Decode(&f)
	if err != nil {
		if e := newerSchemaError(src.Path, src.Data); e != nil {
			errs.add(e)
			return nil
		}
		errs.add(tomlError(src.Path, err))
		return nil
	}
	if msg := schemaProblem(f.Schema, md.IsDefined(SchemaKey)); msg != "" {
		// A newer file may mean anything: nothing else of it is read.
		errs.add(&Error{File: src.Path, Line: o.line(SchemaKey), Key: SchemaKey, Msg: msg})
		return nil
	}
	for _, k := range md.Undecoded() {
		errs.add(&Error{File: src.Path, Line: o.line(k.String()), Key: k.String(), Msg: "unknown key"})
	}
	return &f
}

// Decoded is one nodes file already decoded, for ResolveNodes.
type Decoded struct {
	Path string
	// Data is the text File was decoded from, for the lines of error
	// messages; nil when File has changed since (errors then give no line).
	Data []byte
	File *File
}

// ResolveNodes merges and validates decoded nodes files as ParseNodesFiles
// does, without decoding anything. The files are only read.
func ResolveNodes(files []Decoded) (*Nodes, error) {
	errs := errList{order: make(map[string]int, len(files))}
	return resolveNodes(files, &errs, false)
}

// ParseNodesFiles parses, merges and validates several nodes files as one
// node database. A node or profile may be defined in one file only; errors
// name the file and line of the key concerned. Every error found is
// reported (an *Errors when there are several): a file that does not parse
// is skipped, the others are still checked.
func ParseNodesFiles(srcs []Source) (*Nodes, error) {
	errs := errList{order: make(map[string]int, len(srcs))}
	files := make([]Decoded, 0, len(srcs))
	broken := false // a file did not parse: its names are unknown
	for i, src := range srcs {
		errs.order[src.Path] = i
		f := decodeNodesFile(src, &origin{path: src.Path, data: src.Data}, &errs)
		if f == nil {
			broken = true
			continue
		}
		files = append(files, Decoded{Path: src.Path, Data: src.Data, File: f})
	}
	return resolveNodes(files, &errs, broken)
}

// written is an entry and the file it is written in.
type written struct {
	e *Entry
	o *origin
}

// resolver is one resolveNodes run: every entry as written, and the node
// database being filled. Its steps report every problem found (fail), so one
// run lists them all.
type resolver struct {
	profiles, nodes map[string]written
	first           *origin // where errors about no particular file go
	errs            *errList
	broken          bool            // a file did not parse: its names are unknown
	nested          map[string]bool // profiles with profiles, reported once
	ns              *Nodes
	devs            map[string]*NetDevEntry // one node's merged devices (reused)
	devNames        []string
}

func resolveNodes(files []Decoded, errs *errList, broken bool) (*Nodes, error) {
	r := &resolver{errs: errs, broken: broken, nested: map[string]bool{}, devs: map[string]*NetDevEntry{}}
	r.collect(files)
	names := r.checkNames()
	r.checkKernelArgs()
	r.checkNetworkDrivers() // netdrivers.go
	r.checkBMCEntries()
	r.ns = &Nodes{ByName: make(map[string]*Node, len(names)), ByMAC: make(map[string]*Node, len(names)),
		ByIP: make(map[string]*Node, len(names)), List: make([]*Node, 0, len(names)), Public: make([]*PublicNode, 0, len(names))}
	for _, name := range names {
		r.resolveNode(name)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	ns := r.ns
	sum := sha256.New()
	enc := json.NewEncoder(sum)
	for _, n := range ns.List {
		_ = enc.Encode(n)
		sum.Write([]byte(n.AssetKey))
	}
	ns.Hash = hex.EncodeToString(sum.Sum(nil))
	return ns, nil
}

// collect gathers every profile and node of files with the file that
// defines it; a name defined twice is an error (one file per name).
func (r *resolver) collect(files []Decoded) {
	count := 0
	for _, df := range files {
		count += len(df.File.Nodes)
	}
	r.profiles = map[string]written{}
	r.nodes = make(map[string]written, count)
	for i, df := range files {
		if _, ok := r.errs.order[df.Path]; !ok {
			r.errs.order[df.Path] = i
		}
		o := &origin{path: df.Path, data: df.Data}
		if i == 0 {
			r.first = o
		}
		for _, kind := range []struct {
			prefix string
			from   map[string]*Entry
			to     map[string]written
		}{{"profiles.", df.File.Profiles, r.profiles}, {"nodes.", df.File.Nodes, r.nodes}} {
			for name, e := range kind.from {
				if prev, dup := kind.to[name]; dup {
					key := kind.prefix + name
					r.errs.add(&Error{File: df.Path, Line: o.line(key), Key: key,
						Msg: fmt.Sprintf("also defined in %s:%d (a name may be defined in one file only)", prev.o.path, prev.o.line(key))})
					continue
				}
				if e == nil {
					e = &Entry{}
				}
				kind.to[name] = written{e, o}
			}
		}
	}
	if r.first == nil {
		r.first = &origin{path: NodesFile}
	}
}

// fail reports key in the file that defines its node or profile.
func (r *resolver) fail(key, format string, a ...any) {
	o := r.first
	parts := strings.SplitN(key, ".", 3)
	if len(parts) >= 2 {
		m := r.nodes
		if parts[0] == "profiles" {
			m = r.profiles
		}
		if w, ok := m[parts[1]]; ok {
			o = w.o
		}
	}
	r.errs.add(&Error{File: o.path, Line: o.line(key), Key: key, Msg: fmt.Sprintf(format, a...)})
}

// checkNames checks every profile and node name and returns the valid node
// names, sorted: the order nodes are resolved and listed in.
func (r *resolver) checkNames() []string {
	for name := range r.profiles {
		if err := checkName(name); err != nil {
			r.fail("profiles."+name, "%v", err)
		}
	}
	names := make([]string, 0, len(r.nodes))
	for name := range r.nodes {
		if err := checkName(name); err != nil {
			r.fail("nodes."+name, "%v", err)
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// eachWritten calls fn with every profile and node entry as written and its
// key ("profiles.NAME", "nodes.NAME"): checks of values where they are
// written (a profile's even when no node uses it yet).
func (r *resolver) eachWritten(fn func(key string, e *Entry)) {
	for _, kind := range []struct {
		prefix  string
		entries map[string]written
	}{{"profiles.", r.profiles}, {"nodes.", r.nodes}} {
		for name, w := range kind.entries {
			fn(kind.prefix+name, w.e)
		}
	}
}

// checkKernelArgs checks kernel arguments where they are written.
func (r *resolver) checkKernelArgs() {
	r.eachWritten(func(key string, e *Entry) {
		for _, a := range e.KernelArgs {
			if err := CheckKernelArg(a); err != nil {
				r.fail(key+".kernel_args", "%v", err)
				return
			}
		}
	})
}

// nodeCheck is the resolving of one node: bad records that it failed, so it
// is left out while the rest are still checked.
type nodeCheck struct {
	*resolver
	key string // "nodes.NAME"
	bad bool
	bmc BMCEntry // the node's merged bmc tables
}

func (c *nodeCheck) nfail(k, format string, a ...any) {
	c.bad = true
	c.fail(k, format, a...)
}

// resolveNode merges a node with its profiles, checks the result and adds
// it to the database when it and everything before it are valid.
func (r *resolver) resolveNode(name string) {
	w := r.nodes[name]
	c := &nodeCheck{resolver: r, key: "nodes." + name}
	// Nothing of the entry is shared with n: an editor changes entries after
	// resolving them (server/nodeedit).
	n := &Node{Name: name, Tags: map[string]string{}, File: w.o.path}
	if len(w.e.Profiles) > 0 {
		n.Profiles = append([]string(nil), w.e.Profiles...)
	}
	unresolved := c.merge(n, w.e)
	c.checkKeys(n, w.e, unresolved)
	c.resolveNetwork(n)
	if n.Discoverable && n.Primary().HWAddr == "" && filepath.Base(filepath.Dir(n.File)) != NodesDir {
		c.nfail(c.key+".discoverable", "a discoverable node without hwaddr must be defined under %s/ (wwserver node add --discoverable), where discovery writes its MAC", NodesDir)
	}
	if c.bad || !r.errs.empty() {
		return // the database is not returned; keep checking the rest
	}
	ns := r.ns
	if n.Discoverable && n.Primary().HWAddr == "" {
		ns.Undiscovered = append(ns.Undiscovered, n)
	}
	var pw string
	if n.BMC, pw = resolveBMC(&c.bmc); pw != "" {
		if ns.bmcPasswords == nil {
			ns.bmcPasswords = map[string]string{}
		}
		ns.bmcPasswords[name] = pw
	}
	ns.List = append(ns.List, n)
	ns.Public = append(ns.Public, n.Public())
	ns.ByName[name] = n
}

// merge applies the node's profiles in order, then its own values, which
// win. It reports whether a profile was missing (merged values incomplete).
func (c *nodeCheck) merge(n *Node, e *Entry) (unresolved bool) {
	clear(c.devs)
	for _, p := range e.Profiles {
		pw, ok := c.profiles[p]
		if !ok {
			if !c.broken { // it may be defined in the file that did not parse
				c.nfail(c.key+".profiles", "profile %q is not defined", p)
			}
			c.bad, unresolved = true, true
			continue
		}
		if len(pw.e.Profiles) > 0 {
			if !c.nested[p] {
				c.nested[p] = true
				c.fail("profiles."+p+".profiles", "profiles cannot include other profiles")
			}
			c.bad, unresolved = true, true
			continue
		}
		n.merge(pw.e, c.devs)
		mergeBMC(&c.bmc, pw.e.BMC)
	}
	n.merge(e, c.devs)
	mergeBMC(&c.bmc, e.BMC)
	return unresolved
}

// checkKeys checks the merged values other than the network devices.
func (c *nodeCheck) checkKeys(n *Node, e *Entry, unresolved bool) {
	key := c.key
	if n.Root == "" {
		n.Root = RootTmpfs
	}
	if n.Root != RootTmpfs && n.Root != RootInitramfs {
		c.nfail(key+".root", "must be %q or %q, got %q", RootTmpfs, RootInitramfs, n.Root)
	}
	checkBoot(n, key, e, func(p string) *string { // boot.go
		if pw, ok := c.profiles[p]; ok && pw.e != nil {
			return pw.e.Boot
		}
		return nil
	}, c.nfail)
	checkBootloader(n, key, e, func(p string) *Entry { return c.profiles[p].e }, c.nfail)
	c.ns.AnyGRUB = c.ns.AnyGRUB || n.Bootloader == LoaderGRUB
	if n.Image == "" && !unresolved {
		c.nfail(key+".image", "no image set (on the node or its profiles)")
	}
	for _, field := range [2]struct{ k, v string }{{"image", n.Image}, {"ipxe_template", n.IPXETemplate}} {
		if field.v != "" && checkName(field.v) != nil {
			c.nfail(key+"."+field.k, "%q is not a plain name", field.v)
		}
	}
	for _, list := range [2][]string{n.SystemOverlays, n.RuntimeOverlays} {
		for _, o := range list {
			if checkName(o) != nil {
				c.nfail(key, "overlay %q is not a plain name", o)
			}
		}
	}
	c.checkNetworkConf(n) // netdev.go
	if n.Kernel != "" && (strings.HasPrefix(n.Kernel, "/") || strings.Contains("/"+n.Kernel+"/", "/../")) {
		c.nfail(key+".kernel", "%q must be a path inside the image rootfs", n.Kernel)
	}
}

// resolveNetwork checks the merged devices in name order, indexes their
// MACs and addresses, and puts the primary device first.
func (c *nodeCheck) resolveNetwork(n *Node) {
	c.devNames = c.devNames[:0]
	for d := range c.devs {
		c.devNames = append(c.devNames, d)
	}
	sort.Strings(c.devNames)
	primaries := 0
	if len(c.devNames) > 0 {
		n.Network = make([]NetDev, 0, len(c.devNames))
	}
	for _, d := range c.devNames {
		if err := checkName(d); err != nil { // rendered into interfaces files and wwclient.toml
			c.nfail(c.key+".network."+d, "device %v", err)
			continue
		}
		dev := c.checkDev(d, c.devs[d])
		if dev.Primary {
			primaries++
		}
		c.index(n, dev)
		n.Network = append(n.Network, dev)
	}
	if primaries > 1 {
		c.nfail(c.key+".network", "%d devices are marked primary; at most one may be", primaries)
	}
	c.checkDevLinks(n) // netdev.go: bonds, vlans, gateways
	if primaries == 0 && len(n.Network) > 0 {
		// a single or first device is primary by default (netdev.go: an
		// ethernet card before bonds, vlans and IPoIB)
		n.Network[defaultPrimary(n.Network)].Primary = true
	}
	if len(n.Network) > 1 {
		sort.SliceStable(n.Network, func(i, j int) bool { return n.Network[i].Primary && !n.Network[j].Primary })
	}
}

// checkDev checks one merged device's MAC and addresses.
func (c *nodeCheck) checkDev(d string, rd *NetDevEntry) NetDev {
	dk := c.key + ".network." + d
	dev := NetDev{Name: d}
	if rd.HWAddr != nil && !rd.infiniband() { // netdev.go checks an IPoIB address
		mac, err := nodeapi.NormalizeMAC(*rd.HWAddr)
		if err == nil {
			err = CheckUnicastMAC(mac)
		}
		if err != nil {
			c.nfail(dk+".hwaddr", "%v", err)
		}
		dev.HWAddr = mac
	}
	for _, f := range [3]struct {
		k   string
		src *string
		dst *string
	}{{"ipaddr", rd.IPAddr, &dev.IPAddr}, {"netmask", rd.Netmask, &dev.Netmask}, {"gateway", rd.Gateway, &dev.Gateway}} {
		if f.src == nil || *f.src == "" {
			continue
		}
		if parseIPv4(*f.src) == nil {
			c.nfail(dk+"."+f.k, "%q is not an IPv4 address", *f.src)
			continue
		}
		*f.dst = *f.src
	}
	if dev.Netmask != "" && !isMask(dev.Netmask) {
		c.nfail(dk+".netmask", "%q is not a netmask", dev.Netmask)
	}
	if err := CheckHostAddr(dev.IPAddr, dev.Netmask); err != nil {
		c.nfail(dk+".ipaddr", "%v", err)
	}
	dev.Primary = rd.Primary != nil && *rd.Primary
	c.checkDevExtra(dk, rd, &dev) // netdev.go
	return dev
}

// index records dev's MAC and address for n; one used by an earlier node
// is an error naming that node's device.
func (c *nodeCheck) index(n *Node, dev NetDev) {
	dk := c.key + ".network." + dev.Name
	ns := c.ns
	if mac := dev.HWAddr; mac != "" {
		if other, dup := ns.ByMAC[mac]; dup {
			c.nfail(dk+".hwaddr", "MAC %s is also used by %s", mac, owner(other, func(x NetDev) bool { return x.HWAddr == mac }))
		} else {
			ns.ByMAC[mac] = n
		}
	}
	if ip := dev.IPAddr; ip != "" {
		if other, dup := ns.ByIP[ip]; dup {
			c.nfail(dk+".ipaddr", "address %s is also used by %s", ip, owner(other, func(x NetDev) bool { return x.IPAddr == ip }))
		} else {
			ns.ByIP[ip] = n
		}
	}
}

// owner names the device that holds an address, for the error message.
func owner(n *Node, match func(NetDev) bool) string {
	for _, d := range n.Network {
		if match(d) {
			return "nodes." + n.Name + ".network." + d.Name
		}
	}
	return "nodes." + n.Name
}

// merge applies the set fields of r over n. Network devices merge per device and field.
func (n *Node) merge(r *Entry, devs map[string]*NetDevEntry) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&n.Image, r.Image)
	set(&n.Kernel, r.Kernel)
	set(&n.Root, r.Root)
	set(&n.Boot, r.Boot)
	set(&n.Bootloader, r.Bootloader)
	set(&n.AssetKey, r.AssetKey)
	set(&n.IPXETemplate, r.IPXETemplate)
	if r.Discoverable != nil {
		n.Discoverable = *r.Discoverable
	}
	if r.KernelArgs != nil {
		n.KernelArgs = append([]string(nil), r.KernelArgs...)
	}
	if r.NetworkDrivers != nil {
		n.NetworkDrivers = append([]string(nil), r.NetworkDrivers...)
	}
	if r.SystemOverlays != nil {
		n.SystemOverlays = append([]string(nil), r.SystemOverlays...)
	}
	if r.RuntimeOverlays != nil {
		n.RuntimeOverlays = append([]string(nil), r.RuntimeOverlays...)
	}
	for k, v := range r.Tags {
		n.Tags[k] = v
	}
	for name, d := range r.Network {
		if d == nil {
			continue
		}
		cur, ok := devs[name]
		if !ok {
			cur = &NetDevEntry{}
			devs[name] = cur
		}
		if d.HWAddr != nil {
			cur.HWAddr = d.HWAddr
		}
		if d.IPAddr != nil {
			cur.IPAddr = d.IPAddr
		}
		if d.Netmask != nil {
			cur.Netmask = d.Netmask
		}
		if d.Gateway != nil {
			cur.Gateway = d.Gateway
		}
		if d.Primary != nil {
			cur.Primary = d.Primary
		}
		cur.NetDevExtraEntry.merge(&d.NetDevExtraEntry)
	}
	n.NetworkConf.merge(&r.NetworkEntry)
}

// ipxeMeta are the character sequences iPXE's script parser gives a
// meaning to (core/exec.c: "${" expands a setting anywhere in a line; a
// token "||", "&&" or ";" ends a command and starts the next; a token
// starting with "#" starts a comment). A kernel argument is written into
// the iPXE script's boot line, and iPXE has no quoting, so none of them may
// appear in one. (They are refused anywhere in the argument, not only as
// whole tokens: simpler to explain, and no kernel parameter needs them.)
var ipxeMeta = []struct{ seq, what string }{
	{"${", "a setting expansion"},
	{"&&", "a command separator"},
	{"||", "a command separator"},
	{";", "a command separator"},
	{"#", "the start of a comment"},
}

// CheckKernelArg reports why s cannot be one kernel_args entry: a control
// character (a newline would end the iPXE boot line and start a new
// command), or a sequence iPXE's script parser interprets (see ipxeMeta).
// Spaces are allowed: "console=ttyS0 quiet" is two kernel arguments.
func CheckKernelArg(s string) error {
	for i, r := range s {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return fmt.Errorf("kernel argument %q holds a control character (%U at byte %d); "+
				"each argument must be printable text on one line", s, r, i)
		}
	}
	for _, m := range ipxeMeta {
		if strings.Contains(s, m.seq) {
			return fmt.Errorf("kernel argument %q holds %q, which iPXE reads as %s in the boot script "+
				"(iPXE has no quoting); remove it", s, m.seq, m.what)
		}
	}
	return nil
}

// CheckUnicastMAC reports why a normalised MAC cannot be a network card's:
// all zeros, the broadcast address, or a multicast address (the low bit of
// the first byte set). Such a MAC in a request is forged or broken; given
// to a node it would match every broadcast or nothing.
func CheckUnicastMAC(mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("%q is not a MAC address (want 6 bytes like 52:54:00:12:34:56)", mac)
	}
	switch {
	case bytes.Equal(hw, make([]byte, 6)):
		return fmt.Errorf("MAC %s is all zeros, not a network card's address", hw)
	case bytes.Equal(hw, bytes.Repeat([]byte{0xff}, 6)):
		return fmt.Errorf("MAC %s is the broadcast address, not a network card's", hw)
	case hw[0]&1 == 1:
		return fmt.Errorf("MAC %s is a multicast address (the first byte is odd), not a network card's", hw)
	}
	return nil
}

// CheckHostAddr reports why ip cannot be a host's address on a network
// with netmask: it is the network's own address or its broadcast address
// (prefixes up to /30; a /31 or /32 has neither). Nothing is checked
// without a valid netmask.
func CheckHostAddr(ip, netmask string) error {
	bits := PrefixLen(netmask)
	a := parseIPv4(ip)
	if bits < 0 || bits > 30 || a == nil {
		return nil
	}
	mask := net.CIDRMask(bits, 32)
	network := a.Mask(mask)
	bcast := make(net.IP, 4)
	for i := range bcast {
		bcast[i] = network[i] | ^mask[i]
	}
	prefix := fmt.Sprintf("%s/%d", network, bits)
	switch {
	case a.Equal(network):
		return fmt.Errorf("%s is the network address of %s (netmask %s), not a host's", ip, prefix, netmask)
	case a.Equal(bcast):
		return fmt.Errorf("%s is the broadcast address of %s (netmask %s), not a host's", ip, prefix, netmask)
	}
	return nil
}

func checkName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("name %q must be 1-63 characters", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("name %q may hold only letters, digits, '-', '_' and '.'", s)
		}
	}
	if s == "." || s == ".." {
		return fmt.Errorf("name %q is not allowed", s)
	}
	return nil
}

func isMask(s string) bool {
	ip := parseIPv4(s)
	if ip == nil {
		return false
	}
	ones, bits := net.IPMask(ip).Size()
	return bits == 32 && ones >= 0
}

// PrefixLen returns the prefix length of a dotted netmask, or -1.
func PrefixLen(mask string) int {
	ip := parseIPv4(mask)
	if ip == nil {
		return -1
	}
	ones, bits := net.IPMask(ip).Size()
	if bits != 32 {
		return -1
	}
	return ones
}
