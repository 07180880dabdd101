package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Schema versions of wwserver.toml and nodes.toml (top-level key
// `schema`). A file without the key is SchemaLegacy: the format before the
// key existed, still read. `wwserver upgrade` (server/configupgrade)
// rewrites older files to Schema; a file newer than Schema is refused, so
// an older wwserver never half-reads a newer file. nodes.d/ files carry no
// schema: they are written whole by the wwserver that reads them.
//
//	1  no schema key; dhcp.answer_router_solicitations may be a boolean
//	2  schema = 2; dhcp.answer_router_solicitations is "auto", "true" or "false"
const (
	SchemaLegacy = 1
	Schema       = 2
)

// SchemaKey is the top-level key holding a file's schema version.
const SchemaKey = "schema"

// schemaProblem says what is wrong with a schema value (defined: written
// in the file), "" when it is one this wwserver reads.
func schemaProblem(v int, defined bool) string {
	switch {
	case !defined:
		return ""
	case v > Schema:
		return fmt.Sprintf("schema %d is newer than this wwserver reads (%d): upgrade wwserver, or restore the file's .old copy", v, Schema)
	case v < SchemaLegacy:
		return fmt.Sprintf("must be %d..%d, got %d", SchemaLegacy, Schema, v)
	}
	return ""
}

// newerSchemaError is the error to report when path did not decode: a
// schema newer than Schema is the likelier cause (a key whose type
// changed), nil otherwise.
func newerSchemaError(path string, data []byte) error {
	var v struct {
		Schema int `toml:"schema"`
	}
	if _, err := toml.Decode(string(data), &v); err != nil || v.Schema <= Schema {
		return nil
	}
	return &Error{File: path, Line: KeyLine(data, SchemaKey), Key: SchemaKey, Msg: schemaProblem(v.Schema, true)}
}

// KeyLine is the line of a dotted key in TOML text (0: not found), as
// errors name it.
func KeyLine(data []byte, key string) int { return newLocator(data).line(key) }

// fastSchema reads a top-level `schema = N` line for the nodes fast
// parser: plain decimal only (anything else is left to the TOML decoder).
func fastSchema(f *File, key, rest string) bool {
	rest = strings.TrimLeft(rest, " \t")
	if key != SchemaKey || f.Schema != 0 || !strings.HasPrefix(rest, "=") {
		return false
	}
	rest = strings.TrimLeft(rest[1:], " \t")
	num, tail := rest, ""
	if i := strings.IndexAny(rest, " \t#"); i >= 0 {
		num, tail = rest[:i], rest[i:]
	}
	if !restIsComment(tail) || num == "" || num[0] == '0' || strings.TrimLeft(num, "0123456789") != "" || len(num) > 9 {
		return false
	}
	v, err := strconv.Atoi(num)
	if err != nil {
		return false
	}
	f.Schema = v
	return true
}
