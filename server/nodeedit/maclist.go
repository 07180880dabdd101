package nodeedit

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
)

// maxMACListSize bounds the vendor file read into memory.
const maxMACListSize = 16 << 20

// MACLine is one MAC of a vendor list and the line it was on.
type MACLine struct {
	MAC  string
	Line int
}

// ParseMACList reads a vendor MAC list in rack order: one MAC per line, or
// CSV (',' ';' or tab separated) with a column whose header names a MAC
// ("mac", "MAC Address", "hwaddr" …) or, without a header, the first column
// holding a MAC. Blank lines and lines starting with '#' are skipped.
func ParseMACList(name string, r io.Reader) ([]MACLine, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxMACListSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxMACListSize {
		return nil, fmt.Errorf("%s: larger than %d MiB", name, maxMACListSize>>20)
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comma = detectComma(data)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	col := -1
	var out []MACLine
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if col < 0 {
			col = macColumn(rec)
			if col < 0 {
				if col = headerColumn(rec); col < 0 {
					return nil, fmt.Errorf("%s:%d: no MAC address and no column named mac or hwaddr in %q", name, line, strings.Join(rec, string(cr.Comma)))
				}
				continue // a header
			}
		}
		if col >= len(rec) {
			return nil, fmt.Errorf("%s:%d: no column %d", name, line, col+1)
		}
		mac, err := nodeapi.NormalizeMAC(strings.TrimSpace(rec[col]))
		if err == nil {
			err = config.CheckUnicastMAC(mac)
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if prev, dup := seen[mac]; dup {
			return nil, fmt.Errorf("%s:%d: MAC %s is also on line %d", name, line, mac, prev)
		}
		seen[mac] = line
		out = append(out, MACLine{MAC: mac, Line: line})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no MAC addresses", name)
	}
	return out, nil
}

// detectComma picks the separator of the first data line.
func detectComma(data []byte) rune {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		for _, c := range []rune{',', ';', '\t'} {
			if strings.ContainsRune(l, c) {
				return c
			}
		}
		break
	}
	return ','
}

func macColumn(rec []string) int {
	for i, f := range rec {
		if _, err := nodeapi.NormalizeMAC(strings.TrimSpace(f)); err == nil {
			return i
		}
	}
	return -1
}

func headerColumn(rec []string) int {
	for i, f := range rec {
		h := strings.ToLower(strings.TrimSpace(f))
		if strings.Contains(h, "mac") || strings.Contains(h, "hwaddr") {
			return i
		}
	}
	return -1
}
