package image

import (
	"fmt"

	"github.com/dustin/go-humanize"
)

// SetLimits sets MaxSize and Reserve from the SIZE flags of image import
// (bytes, or a number with a unit: 500MB, 10GiB). An empty reserve keeps
// the default; "0" means none (NoReserve).
func (o *Options) SetLimits(maxSize, reserve string) error {
	var err error
	if o.MaxSize, err = parseSize("--max-size", maxSize); err != nil {
		return err
	}
	if reserve != "" {
		if o.Reserve, err = parseSize("--reserve", reserve); err != nil {
			return err
		}
		if o.Reserve == 0 {
			o.Reserve = NoReserve
		}
	}
	return nil
}

// parseSize reads one SIZE flag; "" is 0.
func parseSize(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("%s %q: want bytes or a size such as 500MB or 10GiB", flag, s)
	}
	return int64(n), nil
}

// Summary is the line image import prints: what source was imported as
// images/name and its size.
func (m *Meta) Summary(source, name string) string {
	what := m.Kind
	if m.Digest != "" {
		what += " " + m.Digest
	}
	return fmt.Sprintf("imported %s (%s) into images/%s/rootfs: %d layer(s), %d files, %.1f MiB",
		source, what, name, m.Layers, m.Files, float64(m.Bytes)/(1<<20))
}
