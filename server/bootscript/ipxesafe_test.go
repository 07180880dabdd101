package bootscript

import (
	"reflect"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// hostileValues are values iPXE would read as more than a value: each
// would add the command "shell" (or expand a setting) if printed as is.
var hostileValues = []string{
	"quiet || shell",
	"quiet && shell",
	"quiet ; shell",
	"quiet\nshell",
	"quiet\r\nshell",
	"quiet #shell",
	"ip=${shell}",
}

func TestIPXESafe(t *testing.T) {
	for _, bad := range hostileValues {
		if _, err := ipxeSafe(reflect.ValueOf(bad)); err == nil {
			t.Errorf("ipxeSafe(%q) accepted", bad)
		}
	}
	for _, good := range []any{"console=ttyS0,115200n8", "a||b", "x#y", "$x", 5, true, []string{"a", "b"}} {
		if _, err := ipxeSafe(reflect.ValueOf(good)); err != nil {
			t.Errorf("ipxeSafe(%v): %v", good, err)
		}
	}
	var nilNode *config.Node
	if got, _ := ipxeSafe(reflect.ValueOf(nilNode)); got != "<nil>" {
		t.Errorf("nil pointer printed %q", got)
	}
}
