package status

import (
	"strconv"
	"unicode/utf8"
)

// appendReport appends r as JSON, byte for byte what json.Marshal(r) gives
// (a test holds it to that), several times faster because it does not go
// through reflection. The status report of 10,000 nodes is ~3 MB.
func appendReport(b []byte, r *Report) []byte {
	b = append(b, `{"now":`...)
	b = strconv.AppendInt(b, r.Now, 10)
	b = append(b, `,"update_interval_seconds":`...)
	b = strconv.AppendInt(b, r.UpdateIntervalSeconds, 10)
	b = append(b, `,"nodes":`...)
	b = appendRows(b, r.Nodes)
	b = append(b, `,"unknown":`...)
	b = appendRows(b, r.Unknown)
	return append(b, '}')
}

func appendRows(b []byte, rows []NodeStatus) []byte {
	if rows == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		ns := &rows[i]
		b = append(b, `{"name":`...)
		b = appendString(b, ns.Name)
		b = append(b, `,"mac":`...)
		b = appendString(b, ns.MAC)
		b = append(b, `,"ipaddr":`...)
		b = appendString(b, ns.IPAddr)
		b = append(b, `,"stage":`...)
		b = appendString(b, ns.Stage)
		b = append(b, `,"sent":`...)
		b = appendString(b, ns.Sent)
		b = append(b, `,"last_seen":`...)
		b = strconv.AppendInt(b, ns.LastSeen, 10)
		b = append(b, `,"heartbeat":`...)
		if hb := ns.Heartbeat; hb == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, `{"version":`...)
			b = appendString(b, hb.Version)
			b = append(b, `,"uptime_seconds":`...)
			b = strconv.AppendInt(b, hb.UptimeSeconds, 10)
			b = append(b, `,"boot_id":`...)
			b = appendString(b, hb.BootID)
			b = append(b, `,"runtime_etag":`...)
			b = appendString(b, hb.RuntimeETag)
			b = append(b, '}')
		}
		if p := ns.Progress; p != nil {
			b = append(b, `,"progress":{"done":`...)
			b = strconv.AppendInt(b, p.Done, 10)
			b = append(b, `,"total":`...)
			b = strconv.AppendInt(b, p.Total, 10)
			b = append(b, '}')
		}
		if ns.Server != "" {
			b = append(b, `,"server":`...)
			b = appendString(b, ns.Server)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does by default: HTML-safe, with
// invalid UTF-8 replaced by U+FFFD and U+2028/U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
