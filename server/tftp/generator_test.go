package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeGenerator answers gen/* names: gen/ok (content, recorded by Sent),
// gen/plain (content, recorded as TFTP), gen/missing and gen/broken.
type fakeGenerator struct {
	mu     sync.Mutex
	sent   []string
	closed int
}

type countingCloser struct {
	io.ReadSeeker
	g *fakeGenerator
}

func (c countingCloser) Close() error {
	c.g.mu.Lock()
	defer c.g.mu.Unlock()
	c.g.closed++
	return nil
}

func (g *fakeGenerator) TFTPFile(_ context.Context, name, ip string) (*File, bool, error) {
	switch name {
	case "gen/ok", "gen/plain":
		data := bytes.Repeat([]byte(name+"|"+ip+"|"), 300) // several blocks
		f := &File{Content: countingCloser{bytes.NewReader(data), g}, Size: int64(len(data))}
		if name == "gen/ok" {
			f.Sent = func() {
				g.mu.Lock()
				defer g.mu.Unlock()
				g.sent = append(g.sent, name)
			}
		}
		return f, true, nil
	case "gen/missing":
		return nil, true, fmt.Errorf("no such node: %w", fs.ErrNotExist)
	case "gen/broken":
		return nil, true, errors.New("render failed")
	}
	return nil, false, nil
}

func (g *fakeGenerator) state() ([]string, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.sent...), g.closed
}

// TestGenerator: names the Generator answers are served from it (tsize
// included) and recorded by its Sent, or as the TFTP stage without one;
// its errors become TFTP errors; other names come from the directory.
func TestGenerator(t *testing.T) {
	g := &fakeGenerator{}
	e := startLoopback(t, Options{Generator: g}, "127.0.0.1")
	if err := os.WriteFile(filepath.Join(e.dir, "snponly.efi"), []byte("from the directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	get := func(name string) ([]byte, error) {
		c := e.client(t)
		c.RequestTSize(true)
		wt, err := c.Receive(name, "octet")
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		_, err = wt.WriteTo(&buf)
		return buf.Bytes(), err
	}
	for _, name := range []string{"gen/ok", "/gen/plain"} {
		data, err := get(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := strings.TrimPrefix(name, "/") + "|127.0.0.1|"
		if !bytes.HasPrefix(data, []byte(want)) || len(data) != 300*len(want) {
			t.Errorf("%s: got %d bytes %.40q", name, len(data), data)
		}
	}
	waitFor(t, "gen/ok recorded by Sent, both closed", func() bool {
		sent, closed := g.state()
		return len(sent) == 1 && sent[0] == "gen/ok" && closed == 2
	})
	waitFor(t, "gen/plain recorded as TFTP", func() bool { _, ok := e.rec.Find("gen/plain"); return ok })
	if _, ok := e.rec.Find("gen/ok"); ok {
		t.Error("gen/ok recorded by the TFTP server as well as by Sent")
	}
	if data, err := get("snponly.efi"); err != nil || string(data) != "from the directory" {
		t.Errorf("directory file: %q, %v", data, err)
	}
	for name, want := range map[string]string{"gen/missing": "file not found", "gen/broken": "server error"} {
		if _, err := get(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", name, err, want)
		}
	}
}
