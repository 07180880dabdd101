// Package config reads the served tree's wwserver.toml and nodes.toml,
// validates them (errors name file, line and key), merges profiles into
// nodes and indexes nodes by MAC so the hot path never re-merges.
package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/wwcluster/ww/server/bootfile"
	"github.com/wwcluster/ww/server/nodeapi"
)

// DefaultPort is the HTTP port nodes use when wwserver.toml names none.
const DefaultPort = nodeapi.DefaultPort

// Duration is a time.Duration written in TOML as a string ("60s", "1h").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler for TOML strings.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Server is wwserver.toml.
type Server struct {
	// Schema is the file's format version (schema.go); 0: not written.
	Schema int `toml:"schema"`
	// Address is the IP nodes use to reach the server.
	Address string `toml:"address"`
	// Listen is the HTTP listen address (default ":9873").
	Listen string `toml:"listen"`
	// UpdateInterval is how often wwclient heartbeats and pulls the runtime overlay.
	UpdateInterval Duration `toml:"update_interval"`
	// Secure serves the runtime overlay only to privileged source ports (and asset keys).
	Secure *bool `toml:"secure"`
	// SourceCheck (secure mode, default on) answers a node's runtime overlay
	// and heartbeats only from its own address; off for relayed/NATed nodes.
	SourceCheck *bool `toml:"source_check"`

	// Bootloader is the default boot loader of nodes that set none:
	// LoaderIPXE (default) or LoaderGRUB (shim + GRUB, Secure Boot).
	Bootloader string `toml:"bootloader"`

	DHCP  DHCP  `toml:"dhcp"`
	TFTP  TFTP  `toml:"tftp"`
	GRUB  GRUB  `toml:"grub"`
	State State `toml:"state"`
	TLS   TLS   `toml:"tls"`

	// Port is the HTTP port nodes connect to, derived from Listen.
	Port int `toml:"-"`

	// bootFiles maps each configured boot file name (cleaned) to its path
	// with symlinks resolved; bootProblems says why one did not resolve.
	// Set by LoadServer, read-only afterwards.
	bootFiles    map[string]string
	bootProblems []error
	grubProblems []error
	// grubARM64Problems: grub.shim_arm64, grub.grub_arm64 (GRUBARM64FileProblems).
	grubARM64Problems []error
	// anticipateSet: tftp.anticipate is written in wwserver.toml (not 0).
	anticipateSet bool
}

// IsSecure reports whether secure mode is on (the default).
func (s *Server) IsSecure() bool { return s.Secure == nil || *s.Secure }

// ChecksSource reports whether a node's runtime overlay and heartbeats are
// answered only from its own address (secure mode and source_check).
func (s *Server) ChecksSource() bool {
	return s.IsSecure() && (s.SourceCheck == nil || *s.SourceCheck)
}

// URL is the base URL nodes use, e.g. http://10.0.2.1:9873.
func (s *Server) URL() string {
	return nodeapi.BaseURL(nodeapi.HostPort(s.Address, s.Port))
}

// DHCP is the [dhcp] section of wwserver.toml.
type DHCP struct {
	Enabled      bool     `toml:"enabled"`
	Mode         string   `toml:"mode"` // "reservation" or "proxy"
	Interface    string   `toml:"interface"`
	Listen       string   `toml:"listen"` // default ":67"
	RangeStart   string   `toml:"range_start"`
	RangeEnd     string   `toml:"range_end"`
	Netmask      string   `toml:"netmask"`
	Router       string   `toml:"router"`
	DNS          []string `toml:"dns"`
	Domain       string   `toml:"domain"`
	LeaseTime    Duration `toml:"lease_time"`
	BIOSFile     string   `toml:"bios_file"`
	EFIFile      string   `toml:"efi_file"`
	ARM64File    string   `toml:"arm64_file"`
	HTTPBootFile string   `toml:"http_boot_file"`
	Workers      int      `toml:"workers"` // fixed packet-handling pool size
	// AnswerRouterSolicitations: whether the server answers IPv6 router
	// solicitations on Interface with an RA that announces nothing, so
	// iPXE's IPv6 autoconfiguration ends at once instead of after ~16 s:
	// "auto" (default: only while no other router advertises there),
	// "true" (always) or "false" (never).
	AnswerRouterSolicitations AnswerRS `toml:"answer_router_solicitations"`
}

// AnswerRS is dhcp.answer_router_solicitations. TOML accepts the strings
// "auto", "true" and "false" and, as before it had three values, the
// booleans true and false.
type AnswerRS string

// The values of AnswerRS ("" after decoding means AnswerRSAuto).
const (
	AnswerRSAuto   AnswerRS = "auto"
	AnswerRSAlways AnswerRS = "true"
	AnswerRSNever  AnswerRS = "false"
)

// UnmarshalTOML implements toml.Unmarshaler: a bool or one of the strings.
func (a *AnswerRS) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		*a = AnswerRSNever
		if v {
			*a = AnswerRSAlways
		}
		return nil
	case string:
		switch x := AnswerRS(v); x {
		case AnswerRSAuto, AnswerRSAlways, AnswerRSNever:
			*a = x
			return nil
		}
		return fmt.Errorf("must be \"auto\", true or false, got %q", v)
	}
	return fmt.Errorf("must be \"auto\", true or false, got %v", v)
}

// MarshalText implements encoding.TextMarshaler ("" encodes as "auto").
func (a AnswerRS) MarshalText() ([]byte, error) {
	if a == "" {
		return []byte(AnswerRSAuto), nil
	}
	return []byte(a), nil
}

// TFTP is the [tftp] section of wwserver.toml.
type TFTP struct {
	Enabled    bool   `toml:"enabled"`
	Listen     string `toml:"listen"` // default ":69"
	Dir        string `toml:"dir"`    // default /usr/lib/ipxe
	Anticipate int    `toml:"anticipate"`
}

// State is the [state] section of wwserver.toml: where leases and node
// status live. "files" (default) keeps them under state/; "etcd" shares
// them with every wwserver using the same etcd (see docs/deployment.md).
type State struct {
	Backend string `toml:"backend"`
	Etcd    Etcd   `toml:"etcd"`
}

// Etcd is [state.etcd].
type Etcd struct {
	Endpoints []string `toml:"endpoints"`
	CAFile    string   `toml:"ca_file"`
	CertFile  string   `toml:"cert_file"`
	KeyFile   string   `toml:"key_file"`
	Prefix    string   `toml:"prefix"`    // default "/wwserver/"
	ServerID  string   `toml:"server_id"` // default: the host name
	Timeout   Duration `toml:"timeout"`   // per request, default 2s
	// LeaseBatch: most DHCP lease claims per etcd transaction (default
	// 64, 1..100); 1 writes each claim alone, as before batching.
	LeaseBatch int `toml:"lease_batch"`
	// AnswerEveryDiscover: every server answers every pool DISCOVER (the
	// path before load balancing); false splits them by hash bucket.
	AnswerEveryDiscover bool `toml:"answer_every_discover"`
}

// Lease batching in etcd (state.etcd.lease_batch): the default and the
// most (etcd's default --max-txn-ops is 128 operations per transaction).
const (
	DefaultLeaseBatch = 64
	MaxLeaseBatch     = 100
)

// State backends.
const (
	BackendFiles = "files"
	BackendEtcd  = "etcd"
)

// DHCP modes.
const (
	ModeReservation = "reservation"
	ModeProxy       = "proxy"
)

// LoadServer reads and validates wwserver.toml at path and resolves the
// boot files it names (see BootFile).
func LoadServer(path string) (*Server, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read server config: %w", err)
	}
	s, err := ParseServer(path, data)
	if err != nil {
		return nil, err
	}
	loc := newLocator(data)
	s.resolveBootFiles(path, loc)
	s.resolveGRUBFiles(path, loc)
	return s, nil
}

// BootFile returns the file to serve for name when name is one of the boot
// files wwserver.toml configures (dhcp.bios_file, efi_file, arm64_file,
// http_boot_file; and ShimName, GRUBName for grub.shim, grub.grub) and it
// resolved to a regular file when the config loaded.
// The admin's config is trusted, so these may be symlinks leading out of
// tftp.dir (Debian's /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi); any other
// name a client asks for stays confined to tftp.dir.
func (s *Server) BootFile(name string) (path string, ok bool) {
	path, ok = s.bootFiles[cleanBootName(name)]
	return path, ok
}

// BootFileProblems lists the configured boot files that could not be
// resolved to a readable regular file (errors name file, line and key).
func (s *Server) BootFileProblems() []error { return s.bootProblems }

// BootFiles are the boot files wwserver.toml configures, for the boot file
// table (server/bootfile).
func (s *Server) BootFiles() bootfile.Files {
	d := &s.DHCP
	return bootfile.Files{BIOS: d.BIOSFile, EFI: d.EFIFile, ARM64: d.ARM64File, HTTP: d.HTTPBootFile, Shim: ShimName, ShimARM64: ShimARM64Name}
}

// BootFileKeys are the wwserver.toml keys naming a boot file (the
// bootfile slots), with their values.
func (s *Server) BootFileKeys() [][2]string {
	files := s.BootFiles()
	var out [][2]string
	for _, slot := range bootfile.Slots() {
		out = append(out, [2]string{string(slot), files.File(slot)})
	}
	return out
}

func cleanBootName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// resolveBootFiles follows each configured boot file's symlinks once.
func (s *Server) resolveBootFiles(file string, loc *locator) {
	s.bootFiles = map[string]string{}
	for _, kv := range s.BootFileKeys() {
		key, name := kv[0], kv[1]
		if name == "" {
			continue
		}
		p, err := resolveRegular(filepath.Join(s.TFTP.Dir, cleanBootName(name)))
		if err != nil {
			s.bootProblems = append(s.bootProblems, &Error{File: file, Line: loc.line(key), Key: key,
				Msg: fmt.Sprintf("boot file %q in %s: %v", name, s.TFTP.Dir, err)})
			continue
		}
		s.bootFiles[cleanBootName(name)] = p
	}
}

// resolveRegular resolves p's symlinks and checks the result is a regular
// file this process can open for reading.
func resolveRegular(p string) (string, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file (%s)", real, fi.Mode().Type())
	}
	f, err := os.Open(real)
	if err != nil {
		return "", err
	}
	f.Close()
	return real, nil
}

// ParseServer parses wwserver.toml content; path is used in error messages.
// It reports every error found (an *Errors when there are several).
func ParseServer(path string, data []byte) (*Server, error) {
	var s Server
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&s)
	if err != nil {
		if e := newerSchemaError(path, data); e != nil {
			return nil, e
		}
		return nil, tomlError(path, err)
	}
	loc := newLocator(data)
	var errs errList
	if msg := schemaProblem(s.Schema, md.IsDefined(SchemaKey)); msg != "" {
		// A newer file may mean anything: nothing else of it is read.
		return nil, &Error{File: path, Line: loc.line(SchemaKey), Key: SchemaKey, Msg: msg}
	}
	for _, k := range md.Undecoded() {
		errs.add(&Error{File: path, Line: loc.line(k.String()), Key: k.String(), Msg: "unknown key"})
	}
	fail := func(key, format string, a ...any) {
		errs.add(&Error{File: path, Line: loc.line(key), Key: key, Msg: fmt.Sprintf(format, a...)})
	}
	s.anticipateSet = s.TFTP.Anticipate != 0
	s.applyDefaults()
	if s.Address == "" {
		fail("address", "required: the IP address nodes use to reach this server")
	} else if ip := net.ParseIP(s.Address); ip == nil || ip.To4() == nil {
		fail("address", "%q is not an IPv4 address", s.Address)
	}
	if _, port, err := net.SplitHostPort(s.Listen); err != nil {
		fail("listen", "%q: %v", s.Listen, err)
	} else if s.Port, err = strconv.Atoi(port); err != nil || s.Port <= 0 || s.Port > 65535 {
		fail("listen", "bad port %q", port)
	}
	if s.UpdateInterval.Duration < time.Second {
		fail("update_interval", "must be at least 1s, got %s", s.UpdateInterval)
	}
	checkDHCP(&s.DHCP, fail)
	if s.TFTP.Anticipate < 0 || s.TFTP.Anticipate > 64 {
		fail("tftp.anticipate", "must be 0..64, got %d", s.TFTP.Anticipate)
	}
	if err := checkLoader(s.Bootloader); err != nil {
		fail("bootloader", "%v", err)
	}
	for _, f := range []struct{ key, val string }{{"grub.shim", s.GRUB.Shim}, {"grub.grub", s.GRUB.GRUB},
		{"grub.shim_arm64", s.GRUB.ShimARM64}, {"grub.grub_arm64", s.GRUB.GRUBARM64}} {
		if !filepath.IsAbs(f.val) {
			fail(f.key, "%q: want an absolute path on this server", f.val)
		}
	}
	checkState(&s.State, fail)
	checkTLS(&s.TLS, s.Port, fail)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Server) applyDefaults() {
	if s.Listen == "" {
		s.Listen = ":" + strconv.Itoa(DefaultPort)
	}
	if s.UpdateInterval.Duration == 0 {
		s.UpdateInterval.Duration = 60 * time.Second
	}
	if s.State.Backend == "" {
		s.State.Backend = BackendFiles
	}
	if s.State.Etcd.LeaseBatch == 0 {
		s.State.Etcd.LeaseBatch = DefaultLeaseBatch
	}
	if s.Bootloader == "" {
		s.Bootloader = LoaderIPXE
	}
	if s.GRUB.Shim == "" {
		s.GRUB.Shim = DefaultShim
	}
	if s.GRUB.GRUB == "" {
		s.GRUB.GRUB = DefaultGRUB
	}
	if s.GRUB.ShimARM64 == "" {
		s.GRUB.ShimARM64 = DefaultShimARM64
	}
	if s.GRUB.GRUBARM64 == "" {
		s.GRUB.GRUBARM64 = DefaultGRUBARM64
	}
	d := &s.DHCP
	if d.Mode == "" {
		d.Mode = ModeReservation
	}
	if d.Listen == "" {
		d.Listen = ":67"
	}
	if d.Netmask == "" {
		d.Netmask = "255.255.255.0"
	}
	if d.LeaseTime.Duration == 0 {
		d.LeaseTime.Duration = time.Hour
	}
	if d.BIOSFile == "" {
		d.BIOSFile = "undionly.kpxe"
	}
	if d.EFIFile == "" {
		d.EFIFile = "snponly.efi"
	}
	if d.HTTPBootFile == "" {
		d.HTTPBootFile = "ipxe.efi"
	}
	if d.Workers == 0 {
		d.Workers = 8
		if s.State.Backend == BackendEtcd {
			// Each worker waits for its claim's batch to commit: a storm
			// needs many claims in flight to fill the batches (8 batches
			// of 64 in flight per server).
			d.Workers = 512
		}
	}
	if d.AnswerRouterSolicitations == "" {
		d.AnswerRouterSolicitations = AnswerRSAuto
	}
	t := &s.TFTP
	if t.Listen == "" {
		t.Listen = ":69"
	}
	if t.Dir == "" {
		t.Dir = "/usr/lib/ipxe"
	}
	if t.Anticipate == 0 {
		t.Anticipate = 8
	}
}

func parseIPv4(s string) net.IP {
	ip := net.ParseIP(s)
	if ip == nil {
		return nil
	}
	return ip.To4()
}

func ipToU32(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

// failFunc reports a problem with key of the file being checked.
type failFunc func(key, format string, a ...any)

// checkDHCP checks the [dhcp] table: the mode, addresses, range and workers.
func checkDHCP(d *DHCP, fail failFunc) {
	if d.Mode != ModeReservation && d.Mode != ModeProxy {
		fail("dhcp.mode", "must be %q or %q, got %q", ModeReservation, ModeProxy, d.Mode)
	}
	if d.Enabled && d.Interface == "" {
		fail("dhcp.interface", "required when dhcp is enabled")
	}
	for _, f := range []struct{ key, val string }{
		{"dhcp.range_start", d.RangeStart}, {"dhcp.range_end", d.RangeEnd},
		{"dhcp.netmask", d.Netmask}, {"dhcp.router", d.Router},
	} {
		if f.val != "" && parseIPv4(f.val) == nil {
			fail(f.key, "%q is not an IPv4 address", f.val)
		}
	}
	for _, v := range d.DNS {
		if parseIPv4(v) == nil {
			fail("dhcp.dns", "%q is not an IPv4 address", v)
		}
	}
	if (d.RangeStart == "") != (d.RangeEnd == "") {
		fail("dhcp.range_end", "range_start and range_end go together")
	}
	if start, end := parseIPv4(d.RangeStart), parseIPv4(d.RangeEnd); start != nil && end != nil && ipToU32(start) > ipToU32(end) {
		fail("dhcp.range_end", "range_end %s is before range_start %s", d.RangeEnd, d.RangeStart)
	}
	if d.Workers < 1 || d.Workers > 1024 {
		fail("dhcp.workers", "must be 1..1024, got %d", d.Workers)
	}
}

// checkState checks the [state] table: the backend and its etcd settings.
func checkState(st *State, fail failFunc) {
	switch st.Backend {
	case BackendFiles:
	case BackendEtcd:
		if len(st.Etcd.Endpoints) == 0 {
			fail("state.etcd.endpoints", "required when state.backend is %q", BackendEtcd)
		}
		for _, e := range st.Etcd.Endpoints {
			if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
				fail("state.etcd.endpoints", "%q: want http://HOST:PORT or https://HOST:PORT", e)
			}
		}
		if st.Etcd.LeaseBatch < 1 || st.Etcd.LeaseBatch > MaxLeaseBatch {
			fail("state.etcd.lease_batch", "must be 1..%d, got %d", MaxLeaseBatch, st.Etcd.LeaseBatch)
		}
		if tls := [3]bool{st.Etcd.CAFile != "", st.Etcd.CertFile != "", st.Etcd.KeyFile != ""}; tls != [3]bool{} && tls != [3]bool{true, true, true} {
			fail("state.etcd.ca_file", "ca_file, cert_file and key_file go together")
		}
	default:
		fail("state.backend", "must be %q or %q, got %q", BackendFiles, BackendEtcd, st.Backend)
	}
}
