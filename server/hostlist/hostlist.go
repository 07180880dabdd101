// Package hostlist expands compact node lists such as "c[001-010],gpu01"
// or "r[1-2]n[01-02]" into node names.
//
// Grammar: a pattern is a comma-separated list of items. An item is literal
// text with any number of bracket groups; a group holds a comma-separated list
// of numbers and ranges ("1-3,7"). Leading zeros set the width: "[001-010]"
// gives 001 … 010, "[8-10]" gives 8, 9, 10. Several groups in one item expand
// as a cartesian product, leftmost varying slowest. Spaces around items are
// ignored. Duplicate names are dropped (first occurrence wins).
package hostlist

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxNames caps how many names one Expand call may produce, so a typo such as
// "n[1-999999999]" fails fast instead of exhausting memory.
const MaxNames = 100000

// maxDigits bounds the digits of a range bound (fits comfortably in int64).
const maxDigits = 18

// Error is a malformed pattern.
type Error struct {
	Pattern string
	Offset  int // byte offset into Pattern where the problem was found
	Msg     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("hostlist %q: %s (at offset %d)", e.Pattern, e.Msg, e.Offset)
}

// Expand expands pattern into node names, in pattern order and without
// duplicates. It fails on malformed patterns and when more than MaxNames
// names would result.
func Expand(pattern string) ([]string, error) {
	items, err := split(pattern)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, it := range items {
		parts, err := parseItem(pattern, it)
		if err != nil {
			return nil, err
		}
		n := 1
		for _, p := range parts {
			if p.group != nil {
				n *= len(p.group)
				if n > MaxNames {
					return nil, &Error{pattern, it.off, fmt.Sprintf("expands to more than %d names", MaxNames)}
				}
			}
		}
		if len(out)+n > MaxNames {
			return nil, &Error{pattern, it.off, fmt.Sprintf("expands to more than %d names", MaxNames)}
		}
		expandParts(parts, "", func(name string) {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		})
	}
	return out, nil
}

// ExpandAll expands each pattern and concatenates the results without duplicates.
func ExpandAll(patterns []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range patterns {
		names, err := Expand(p)
		if err != nil {
			return nil, err
		}
		if len(out)+len(names) > MaxNames {
			return nil, &Error{p, 0, fmt.Sprintf("patterns expand to more than %d names", MaxNames)}
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out, nil
}

type item struct {
	text string
	off  int // offset of text in the whole pattern
}

// split cuts pattern at the commas that are outside brackets.
func split(pattern string) ([]item, error) {
	var items []item
	depth, start := 0, 0
	flush := func(end int) error {
		raw := pattern[start:end]
		lead := len(raw) - len(strings.TrimLeft(raw, " \t"))
		text := strings.TrimSpace(raw)
		if text == "" {
			return &Error{pattern, start, "empty name"}
		}
		items = append(items, item{text, start + lead})
		return nil
	}
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '[':
			if depth > 0 {
				return nil, &Error{pattern, i, "nested '['"}
			}
			depth++
		case ']':
			if depth == 0 {
				return nil, &Error{pattern, i, "']' without '['"}
			}
			depth--
		case ',':
			if depth == 0 {
				if err := flush(i); err != nil {
					return nil, err
				}
				start = i + 1
			}
		}
	}
	if depth > 0 {
		return nil, &Error{pattern, strings.LastIndexByte(pattern, '['), "unclosed '['"}
	}
	if err := flush(len(pattern)); err != nil {
		return nil, err
	}
	return items, nil
}

// part is literal text or a bracket group.
type part struct {
	lit   string
	group []string // nil for literal text
}

func parseItem(pattern string, it item) ([]part, error) {
	var parts []part
	s := it.text
	for len(s) > 0 {
		i := strings.IndexByte(s, '[')
		if i < 0 {
			parts = append(parts, part{lit: s})
			break
		}
		if i > 0 {
			parts = append(parts, part{lit: s[:i]})
		}
		j := strings.IndexByte(s, ']') // split checked balance and nesting
		off := it.off + len(it.text) - len(s) + i
		g, err := parseGroup(pattern, off, s[i+1:j])
		if err != nil {
			return nil, err
		}
		parts = append(parts, part{group: g})
		s = s[j+1:]
	}
	return parts, nil
}

// parseGroup parses the inside of one "[...]" that starts at offset off.
func parseGroup(pattern string, off int, body string) ([]string, error) {
	if strings.TrimSpace(body) == "" {
		return nil, &Error{pattern, off, "empty '[]'"}
	}
	var out []string
	pos := off + 1
	for _, raw := range strings.Split(body, ",") {
		bad := func(format string, a ...any) error {
			return &Error{pattern, pos, fmt.Sprintf(format, a...)}
		}
		r := strings.TrimSpace(raw)
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		lo, hi = strings.TrimSpace(lo), strings.TrimSpace(hi)
		if lo == "" || hi == "" {
			return nil, bad("range %q needs a number on both sides of '-'", r)
		}
		a, err := number(lo)
		if err != nil {
			return nil, bad("%q in range %q: %v", lo, r, err)
		}
		b, err := number(hi)
		if err != nil {
			return nil, bad("%q in range %q: %v", hi, r, err)
		}
		if b < a {
			return nil, bad("range %q runs backwards", r)
		}
		if b-a >= MaxNames || len(out)+int(b-a+1) > MaxNames {
			return nil, bad("range %q expands to more than %d names", r, MaxNames)
		}
		// A zero-padded bound sets the width: the lower bound's if padded, else the upper's.
		width := 0
		if padded(lo) {
			width = len(lo)
		} else if padded(hi) {
			width = len(hi)
		}
		for v := a; v <= b; v++ {
			out = append(out, pad(v, width))
		}
		pos += len(raw) + 1
	}
	return out, nil
}

func number(s string) (int64, error) {
	if len(s) > maxDigits {
		return 0, fmt.Errorf("more than %d digits", maxDigits)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a number")
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func padded(s string) bool { return len(s) > 1 && s[0] == '0' }

func pad(v int64, width int) string {
	s := strconv.FormatInt(v, 10)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

func expandParts(parts []part, prefix string, emit func(string)) {
	if len(parts) == 0 {
		emit(prefix)
		return
	}
	p := parts[0]
	if p.group == nil {
		expandParts(parts[1:], prefix+p.lit, emit)
		return
	}
	for _, v := range p.group {
		expandParts(parts[1:], prefix+v, emit)
	}
}
