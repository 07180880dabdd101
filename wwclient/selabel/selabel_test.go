package selabel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRelabelBatchesAndReportsFailures(t *testing.T) {
	var calls [][]string
	r := &Relabeler{Restorecon: "/usr/sbin/restorecon", Run: func(ctx context.Context, name string, args ...string) ([]byte, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("restorecon run without a deadline")
		}
		calls = append(calls, append([]string{name}, args...))
		if len(calls) == 2 {
			return []byte("restorecon: lstat(/etc/gone) failed\n"), errors.New("exit status 1")
		}
		return nil, nil
	}}
	var paths []string
	for i := range BatchSize + 3 {
		paths = append(paths, fmt.Sprintf("/etc/f%d", i))
	}
	err := r.Relabel(context.Background(), paths)
	if len(calls) != 2 {
		t.Fatalf("%d runs, want 2", len(calls))
	}
	if got := calls[0][:3]; strings.Join(got, " ") != "/usr/sbin/restorecon -F --" || len(calls[0]) != 3+BatchSize {
		t.Fatalf("first run %v… (%d args)", got, len(calls[0]))
	}
	if strings.Join(calls[1][3:], " ") != fmt.Sprintf("/etc/f%d /etc/f%d /etc/f%d", BatchSize, BatchSize+1, BatchSize+2) {
		t.Fatalf("second run %v", calls[1])
	}
	if err == nil || !strings.Contains(err.Error(), "lstat(/etc/gone)") {
		t.Fatalf("error %v, want restorecon's output", err)
	}
}

func TestEnabled(t *testing.T) {
	dir := t.TempDir()
	if Enabled(dir) {
		t.Fatal("enabled without an enforce file")
	}
	if err := os.WriteFile(filepath.Join(dir, "enforce"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !Enabled(dir) {
		t.Fatal("not enabled with an enforce file")
	}
}
