package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/wwcluster/ww/server/nodeapi"
)

// maxScript bounds an iPXE script read from the server.
const maxScript = 64 << 10

// download is one file an iPXE script fetches.
type download struct {
	Command string // kernel, initrd, imgfetch, module, chain
	Name    string // --name, when given
	URL     string
	Stage   string // stage it is counted under (see stageOf)
	// ImageDigest is the kernel command line's wwimage= (two-stage boot:
	// the sha256 of the image index wwclient fetches after the kernel boots).
	ImageDigest string
}

// fetchCommands are the iPXE commands that download an image.
var fetchCommands = map[string]bool{
	"kernel": true, "initrd": true, "imgfetch": true, "module": true,
	"chain": true, "imgexec": true, "imgload": true,
}

// argCommands are the iPXE commands that pass kernel arguments without
// downloading (boot [IMAGE] ARGS, imgargs IMAGE ARGS).
var argCommands = map[string]bool{"boot": true, "imgargs": true}

// imageDigest records a wwimage= among the words f of a kernel, boot or
// imgargs line on the last kernel download of out (two-stage boot).
func imageDigest(out []download, f []string) {
	for i := len(out) - 1; i >= 0; i-- {
		if out[i].Command != "kernel" {
			continue
		}
		for _, w := range f[1:] {
			if v, ok := strings.CutPrefix(w, nodeapi.ArgImage+"="); ok {
				out[i].ImageDigest = v
			}
		}
		return
	}
}

// errNoKernel is returned for a script that boots nothing (e.g. the
// "unknown node" script).
var errNoKernel = errors.New("script names no kernel")

// parseScript returns the downloads of an iPXE script in order, as iPXE
// would run them when every download succeeds. Retry loops and fallback
// servers (the same URL, or the same --name, again) are counted once: the
// first one is what iPXE fetches when it succeeds. Anything else (echo,
// goto, labels, sleep) is ignored.
func parseScript(script []byte) ([]download, error) {
	if !bytes.HasPrefix(bytes.TrimLeft(script, " \t\r\n"), []byte("#!ipxe")) {
		return nil, errors.New("not an iPXE script (no #!ipxe line)")
	}
	var out []download
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(script))
	sc.Buffer(make([]byte, 4096), maxScript)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) > 0 && argCommands[f[0]] {
			imageDigest(out, f)
			continue
		}
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || !fetchCommands[f[0]] {
			continue
		}
		d := download{Command: f[0]}
		for i := 1; i < len(f); i++ {
			switch {
			case (f[i] == "--name" || f[i] == "-n") && i+1 < len(f):
				d.Name = f[i+1]
				i++
			case strings.HasPrefix(f[i], "--name="):
				d.Name = strings.TrimPrefix(f[i], "--name=")
			case d.URL == "" && strings.Contains(f[i], "://"):
				d.URL = f[i]
			}
			if f[i] == "&&" || f[i] == "||" {
				break
			}
		}
		if d.URL == "" {
			continue // e.g. "kernel" of an image fetched earlier by name
		}
		if strings.Contains(d.URL, "${") {
			// A setting only iPXE knows: the architecture check's report
			// (imgfetch …/wrongarch/${buildarch}), which a node of the
			// image's architecture jumps past.
			continue
		}
		u, err := url.Parse(d.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "tftp") {
			return nil, fmt.Errorf("line %d: bad URL %q", line, d.URL)
		}
		// A name already fetched is a retry or a fallback server's copy
		// (the script jumps past it once the first download succeeds).
		key := d.URL
		if d.Name != "" {
			key = d.Command + " " + d.Name
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		d.Stage = stageOf(u.Path)
		out = append(out, d)
		if d.Command == "kernel" {
			imageDigest(out, f)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read script: %w", err)
	}
	for _, d := range out {
		if d.Command == "kernel" || d.Command == "chain" {
			return out, nil
		}
	}
	return nil, errNoKernel
}

// stageOf names the stage a download is counted under from its URL path:
// wwserver's routes /kernel/, /image/, /overlay/system/, /overlay/runtime/;
// anything else is "file".
func stageOf(path string) string {
	switch {
	case strings.HasPrefix(path, string(nodeapi.Kernel)):
		return stageKernel
	case strings.HasPrefix(path, string(nodeapi.Image)):
		return stageImage
	case strings.HasPrefix(path, string(nodeapi.SystemOverlay)):
		return stageSystem
	case strings.HasPrefix(path, string(nodeapi.RuntimeOverlay)):
		return stageRuntimeBoot
	case strings.HasPrefix(path, string(nodeapi.Modules)):
		return stageModules
	}
	return stageFile
}
