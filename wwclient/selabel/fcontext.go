package selabel

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Contexts is a policy's file_contexts: the labels setfiles and restorecon
// give to paths, matched the way libselinux does (label_file): specs are
// anchored regular expressions with an optional file type; exact paths are
// moved after the others, and the last matching spec wins; path aliases
// (file_contexts.subs_dist, .subs) are applied first; <<none>> means "leave
// unlabelled". It lets the bootstrap label files as it copies them to the
// tmpfs root, instead of a second pass with setfiles.
type Contexts struct {
	specs []*spec
	subs  [][2]string // alias -> canonical, longest alias first
}

type spec struct {
	expr   string
	prefix string // literal start of expr: a path must begin with it
	mode   uint32 // S_IFMT bits the spec is limited to; 0: any
	ctx    string // "" for <<none>>
	re     *regexp.Regexp
	bad    bool // expr does not compile (RE2 lacks a PCRE feature): skipped
}

// File type bits (as in stat's st_mode).
const (
	ModeDir     = 0o040000
	ModeRegular = 0o100000
	ModeSymlink = 0o120000
	ModeChar    = 0o020000
	ModeBlock   = 0o060000
	ModeFIFO    = 0o010000
	ModeSocket  = 0o140000
	modeMask    = 0o170000
)

var fileTypes = map[string]uint32{"--": ModeRegular, "-d": ModeDir, "-l": ModeSymlink, "-c": ModeChar,
	"-b": ModeBlock, "-p": ModeFIFO, "-s": ModeSocket}

// LoadContexts reads dir/file_contexts and, when present,
// file_contexts.homedirs, file_contexts.local, file_contexts.subs_dist and
// file_contexts.subs (dir is /etc/selinux/TYPE/contexts/files).
func LoadContexts(dir string) (*Contexts, error) {
	c := &Contexts{}
	var exact []*spec
	for i, name := range []string{"file_contexts", "file_contexts.homedirs", "file_contexts.local"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			if i > 0 && os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		specs, err := parseSpecs(f, name)
		f.Close()
		if err != nil {
			return nil, err
		}
		for _, s := range specs {
			if s.prefix == s.expr {
				exact = append(exact, s)
			} else {
				c.specs = append(c.specs, s)
			}
		}
	}
	c.specs = append(c.specs, exact...)
	for _, name := range []string{"file_contexts.subs_dist", "file_contexts.subs"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
				c.subs = append(c.subs, [2]string{strings.TrimRight(f[0], "/"), strings.TrimRight(f[1], "/")})
			}
		}
	}
	sort.SliceStable(c.subs, func(i, j int) bool { return len(c.subs[i][0]) > len(c.subs[j][0]) })
	return c, nil
}

func parseSpecs(r io.Reader, name string) ([]*spec, error) {
	var out []*spec
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		s := &spec{expr: f[0]}
		switch len(f) {
		case 2:
			s.ctx = f[1]
		case 3:
			m, ok := fileTypes[f[1]]
			if !ok {
				return nil, fmt.Errorf("%s:%d: unknown file type %q", name, n, f[1])
			}
			s.mode, s.ctx = m, f[2]
		default:
			return nil, fmt.Errorf("%s:%d: want 2 or 3 fields, got %d", name, n, len(f))
		}
		if s.ctx == "<<none>>" {
			s.ctx = ""
		}
		s.prefix = literalPrefix(s.expr)
		out = append(out, s)
	}
	return out, sc.Err()
}

// literalPrefix is the part of a regular expression every match starts
// with (up to the first metacharacter; a character made optional or
// repeatable by the quantifier after it is not part of it).
func literalPrefix(expr string) string {
	i := strings.IndexAny(expr, `.^$?*+|[](){}\`)
	if i < 0 {
		return expr
	}
	if i > 0 && strings.ContainsRune("?*{", rune(expr[i])) {
		i--
	}
	return expr[:i]
}

// alias applies the first (longest) matching path alias.
func (c *Contexts) alias(p string) string {
	for _, s := range c.subs {
		if strings.HasPrefix(p, s[0]) && (len(p) == len(s[0]) || p[len(s[0])] == '/') {
			return s[1] + p[len(s[0]):]
		}
	}
	return p
}

// Lookup returns the context for path (absolute, cleaned) of the file type
// mode (S_IFMT bits); ok false when no spec matches or it says <<none>>.
func (c *Contexts) Lookup(path string, mode uint32) (ctx string, ok bool) {
	p := c.alias(path)
	mode &= modeMask
	for i := len(c.specs) - 1; i >= 0; i-- {
		s := c.specs[i]
		if s.bad || !strings.HasPrefix(p, s.prefix) || (s.mode != 0 && s.mode != mode) {
			continue
		}
		if s.prefix == s.expr {
			if p != s.expr {
				continue
			}
		} else {
			if s.re == nil {
				re, err := regexp.Compile("^(?:" + s.expr + ")$")
				if err != nil {
					s.bad = true
					continue
				}
				s.re = re
			}
			if !s.re.MatchString(p) {
				continue
			}
		}
		return s.ctx, s.ctx != ""
	}
	return "", false
}
