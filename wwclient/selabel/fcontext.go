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
	// Specs by the first path component every match has ("/usr"), and
	// those that can match under any (indexes into specs, ascending): a
	// lookup only tries its path's own and the general ones.
	byStem  map[string][]int
	general []int
}

type spec struct {
	expr   string
	prefix string // literal start of expr: a path must begin with it
	kind   int    // how the rest of expr after prefix matches
	mode   uint32 // S_IFMT bits the spec is limited to; 0: any
	ctx    string // "" for <<none>>
	re     *regexp.Regexp
	bad    bool // expr does not compile (RE2 lacks a PCRE feature): skipped
}

// Spec kinds: most file_contexts expressions are a literal path, or a
// literal directory and everything below it; those are matched without
// a regular expression.
const (
	kindRegexp = iota
	kindExact  // prefix alone
	kindTree   // prefix(/.*)?
	kindBelow  // prefix/.*
	kindAny    // prefix.*
)

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
			if s.kind == kindExact {
				exact = append(exact, s) // libselinux: specs without metacharacters last
			} else {
				c.specs = append(c.specs, s)
			}
		}
	}
	c.specs = append(c.specs, exact...)
	c.byStem = map[string][]int{}
	for i, s := range c.specs {
		if st, ok := specStem(s); ok {
			c.byStem[st] = append(c.byStem[st], i)
		} else {
			c.general = append(c.general, i)
		}
	}
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
		var rest string
		s.prefix, rest = literalPrefix(s.expr)
		switch rest {
		case "":
			s.kind = kindExact
		case "(/.*)?":
			s.kind = kindTree
		case "/.*":
			s.kind = kindBelow
		case ".*":
			s.kind = kindAny
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// literalPrefix splits a regular expression into the literal every match
// starts with (escaped characters included) and the rest. A character made
// optional or repeatable by the quantifier after it is not part of it.
func literalPrefix(expr string) (lit, rest string) {
	var b strings.Builder
	last := 0 // length of b before its last character
	i := 0
	for i < len(expr) {
		c := expr[i]
		if c == '\\' && i+1 < len(expr) && !isAlnum(expr[i+1]) {
			last = b.Len()
			b.WriteByte(expr[i+1])
			i += 2
			continue
		}
		if strings.IndexByte(`.^$?*+|[](){}\`, c) >= 0 {
			break
		}
		last = b.Len()
		b.WriteByte(c)
		i++
	}
	if i < len(expr) && strings.IndexByte("?*{", expr[i]) >= 0 && b.Len() > 0 {
		// the last literal character is optional: back up over it
		j := i - 1
		if j > 0 && expr[j-1] == '\\' {
			j--
		}
		return b.String()[:last], expr[j:]
	}
	return b.String(), expr[i:]
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// specStem is the first path component of every path s matches, if known.
func specStem(s *spec) (string, bool) {
	if len(s.prefix) < 2 || s.prefix[0] != '/' {
		return "", false
	}
	if i := strings.IndexByte(s.prefix[1:], '/'); i >= 0 {
		return s.prefix[:i+1], true
	}
	if s.kind == kindExact || s.kind == kindTree || s.kind == kindBelow {
		return s.prefix, true
	}
	return "", false
}

// pathStem is the first component of an absolute path ("/usr/lib" -> "/usr").
func pathStem(p string) string {
	if i := strings.IndexByte(p[min(1, len(p)):], '/'); i >= 0 {
		return p[:i+1]
	}
	return p
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
	stem, gen := c.byStem[pathStem(p)], c.general
	for len(stem) > 0 || len(gen) > 0 {
		// the highest index of the two lists first: last match wins
		var i int
		if len(gen) == 0 || (len(stem) > 0 && stem[len(stem)-1] > gen[len(gen)-1]) {
			i, stem = stem[len(stem)-1], stem[:len(stem)-1]
		} else {
			i, gen = gen[len(gen)-1], gen[:len(gen)-1]
		}
		s := c.specs[i]
		if s.bad || !strings.HasPrefix(p, s.prefix) || (s.mode != 0 && s.mode != mode) {
			continue
		}
		switch s.kind {
		case kindExact:
			if p != s.prefix {
				continue
			}
		case kindTree:
			if len(p) != len(s.prefix) && p[len(s.prefix)] != '/' {
				continue
			}
		case kindBelow:
			if len(p) == len(s.prefix) || p[len(s.prefix)] != '/' {
				continue
			}
		case kindAny: // the prefix is all it takes
		default:
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
