package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is a configuration error that names file, line and key.
type Error struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// MaxErrors bounds the errors one load reports one by one (a file of
// 100,000 broken nodes is not 100,000 lines); Errors counts the rest.
const MaxErrors = 200

// Errors is every error one load found, sorted by file (in load order) and
// line. errors.As finds each *Error in it.
type Errors struct {
	List []*Error
	More int // errors found beyond MaxErrors
}

func (e *Errors) Error() string {
	var b strings.Builder
	for i, x := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(x.Error())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n(and %d more errors)", e.More)
	}
	return b.String()
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(e.List))
	for i, x := range e.List {
		out[i] = x
	}
	return out
}

// Lines returns each error's text (and a last line counting those beyond
// MaxErrors).
func (e *Errors) Lines() []string {
	out := make([]string, 0, len(e.List)+1)
	for _, x := range e.List {
		out = append(out, x.Error())
	}
	if e.More > 0 {
		out = append(out, fmt.Sprintf("(and %d more errors)", e.More))
	}
	return out
}

// ErrorLines splits an error of this package into one line per error.
func ErrorLines(err error) []string {
	var list *Errors
	if errors.As(err, &list) {
		return list.Lines()
	}
	return []string{err.Error()}
}

// errList collects the errors of one load.
type errList struct {
	errs  []*Error
	more  int
	order map[string]int // file → load order, for sorting
}

func (l *errList) add(err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Msg: err.Error()}
	}
	if len(l.errs) >= MaxErrors {
		l.more++
		return
	}
	l.errs = append(l.errs, e)
}

func (l *errList) empty() bool { return len(l.errs) == 0 }

// err returns nil, the one error, or *Errors sorted by file and line.
func (l *errList) err() error {
	switch {
	case len(l.errs) == 0:
		return nil
	case len(l.errs) == 1 && l.more == 0:
		return l.errs[0]
	}
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i], l.errs[j]
		if a.File != b.File {
			return l.order[a.File] < l.order[b.File]
		}
		return a.Line < b.Line
	})
	return &Errors{List: l.errs, More: l.more}
}

// tomlError converts a TOML syntax or type error into an *Error.
func tomlError(path string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
	}
	return &Error{File: path, Msg: err.Error()}
}

// locator finds the line of a dotted key path in TOML text. The TOML library
// keeps key positions private, so this follows table headers and "key ="
// lines; that covers how people write these files. Unknown keys give 0.
type locator struct{ lines map[string]int }

func newLocator(data []byte) *locator {
	l := &locator{lines: map[string]int{}}
	table := ""
	for i, raw := range strings.Split(string(data), "\n") {
		s := strings.TrimSpace(raw)
		if s == "" || s[0] == '#' {
			continue
		}
		if strings.HasPrefix(s, "[") {
			h := strings.Trim(strings.SplitN(s, "#", 2)[0], " \t[]")
			table = normKey(h)
			if _, ok := l.lines[table]; !ok {
				l.lines[table] = i + 1
			}
			continue
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			continue
		}
		k := normKey(s[:eq])
		if table != "" {
			k = table + "." + k
		}
		if _, ok := l.lines[k]; !ok {
			l.lines[k] = i + 1
		}
	}
	return l
}

func normKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// line returns the line of key, or of its nearest enclosing table.
func (l *locator) line(key string) int {
	for k := key; k != ""; {
		if n, ok := l.lines[k]; ok {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}
