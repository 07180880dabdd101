package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wwcluster/ww/server/atomicfile"
	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// mirrorRequest asks the client side to copy what the nodes get from
// wwserver into a document root for a plain web server.
type mirrorRequest struct {
	Base     string     `json:"base"`
	Docroot  string     `json:"docroot"`
	Nodes    []nodeSpec `json:"nodes"`
	Secure   bool       `json:"secure"` // runtime overlays need a privileged source port
	ClientIP string     `json:"client_ip"`
	Iface    string     `json:"iface"` // where node addresses are added (secure mode serves a node only at its address)
}

type mirrorResult struct {
	Files  int   `json:"files"`  // files written (per-node paths included)
	Stored int   `json:"stored"` // distinct contents downloaded
	Bytes  int64 `json:"bytes"`  // bytes downloaded
	// Two-stage: RawPath (URL path) is every chunk of the first image, in
	// index order, as one file (raw mode's).
	RawPath string `json:"raw_path,omitempty"`
}

// mirrorWorkers bounds the mirror's concurrent downloads.
const mirrorWorkers = 4

// runMirror reads a mirrorRequest (JSON) from in, fetches for every node
// its iPXE script, every file the script names and its runtime overlay,
// and writes each under Docroot at its URL path. Files with the same ETag
// are downloaded once and hard-linked (the image and kernel are the same
// for every node of a profile). The scripts are kept as they are: the
// web server takes wwserver's address and port.
func runMirror(in io.Reader, out io.Writer) error {
	var req mirrorRequest
	if err := json.NewDecoder(io.LimitReader(in, 16<<20)).Decode(&req); err != nil {
		return fmt.Errorf("read mirror request: %w", err)
	}
	if req.Docroot == "" || len(req.Nodes) == 0 || len(req.Nodes) > maxNodes {
		return errors.New("mirror: docroot and 1.. nodes needed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := waitHTTP(ctx, req.Base+nodeapi.Healthz, 60*time.Second); err != nil {
		return err
	}
	m := &mirror{req: req, byETag: map[string]string{}, images: map[string]*imageMirror{}}
	m.plain = newHTTPClient(net.ParseIP(req.ClientIP), false, time.Minute)
	if req.Iface != "" {
		add, err := addressAdder(req.Iface)
		if err != nil {
			return err
		}
		m.addAddr = add
	}

	jobs := make(chan nodeSpec)
	errc := make(chan error, mirrorWorkers)
	var wg sync.WaitGroup
	for range mirrorWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				if err := m.node(ctx, n); err != nil {
					errc <- fmt.Errorf("node %s: %w", n.MAC, err)
					cancel()
					return
				}
			}
		}()
	}
feed:
	for _, n := range req.Nodes {
		select {
		case jobs <- n:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	return json.NewEncoder(out).Encode(m.res)
}

type mirror struct {
	req     mirrorRequest
	plain   *http.Client
	addAddr func(net.IP) error // nil: no interface to add node addresses to
	mu      sync.Mutex
	byETag  map[string]string // ETag → file already stored
	res     mirrorResult
	images  map[string]*imageMirror // two-stage: index digest → its chunks, mirrored once
}

// imageMirror is one chunked image's chunks, mirrored by the first node
// that boots it.
type imageMirror struct {
	once sync.Once
	err  error
}

func (m *mirror) node(ctx context.Context, n nodeSpec) error {
	scriptURL := nodeapi.IPXE.URL(m.req.Base, n.MAC)
	script, err := m.fetch(ctx, m.plain, scriptURL, maxScript)
	if err != nil {
		return err
	}
	downloads, err := parseScript(script)
	if err != nil {
		return fmt.Errorf("%s: %w", scriptURL, err)
	}
	for _, d := range downloads {
		if _, err := m.fetch(ctx, m.plain, d.URL, 0); err != nil {
			return err
		}
		if d.ImageDigest != "" {
			if err := m.chunkedImage(ctx, n.MAC, d.ImageDigest); err != nil {
				return err
			}
		}
	}
	// The runtime overlay as wwclient gets it: from the node's own address
	// (and a privileged port in secure mode).
	src := net.ParseIP(n.IP).To4()
	if src != nil && m.addAddr != nil {
		if err := m.addAddr(src); err != nil {
			return err
		}
	} else {
		src = net.ParseIP(m.req.ClientIP)
	}
	ww := newHTTPClient(src, m.req.Secure, time.Minute)
	defer ww.CloseIdleConnections()
	_, err = m.fetch(ctx, ww, nodeapi.RuntimeOverlay.URL(m.req.Base, n.MAC), 0)
	return err
}

// chunkedImage mirrors a two-stage node's index and, once per image, its
// chunks, and writes the chunks in order as one file (raw mode's).
func (m *mirror) chunkedImage(ctx context.Context, mac, digest string) error {
	data, err := m.fetch(ctx, m.plain, nodeapi.ImageIndex.URL(m.req.Base, mac), chunkimage.MaxIndexSize)
	if err != nil {
		return err
	}
	ix, err := chunkimage.Parse(data, digest)
	if err != nil {
		return fmt.Errorf("index of %s: %w", mac, err)
	}
	m.mu.Lock()
	im := m.images[digest]
	if im == nil {
		im = &imageMirror{}
		m.images[digest] = im
	}
	m.mu.Unlock()
	im.once.Do(func() { im.err = m.chunks(ctx, ix) })
	return im.err
}

// chunks stores every chunk of ix; the first image's also go, in index
// order (a chunk listed twice twice), into the raw file.
func (m *mirror) chunks(ctx context.Context, ix *chunkimage.Index) error {
	have := map[string]bool{} // an index lists a chunk once per place it occurs
	for _, c := range ix.Chunks {
		if have[c.SHA256] {
			continue
		}
		have[c.SHA256] = true
		if _, err := m.fetch(ctx, m.plain, nodeapi.ChunkURL(m.req.Base, c.SHA256), 0); err != nil {
			return err
		}
	}
	m.mu.Lock()
	first := m.res.RawPath == ""
	if first {
		m.res.RawPath = rawPath
	}
	m.mu.Unlock()
	if !first {
		return nil
	}
	raw, err := m.path(rawPath)
	if err != nil {
		return err
	}
	err = atomicfile.Write(raw, 0o644, func(w io.Writer) error {
		for _, c := range ix.Chunks {
			p, err := m.path(nodeapi.ChunkURL("", c.SHA256))
			if err != nil {
				return err
			}
			if err := appendFile(w, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("raw file: %w", err)
	}
	return nil
}

// rawPath is the URL path of the raw file in the document root.
const rawPath = "/raw.bin"

func appendFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// fetch stores u under the docroot; with keep > 0 it also returns the body,
// up to keep bytes (small files only: the scripts, the index).
func (m *mirror) fetch(ctx context.Context, c *http.Client, u string, keep int64) ([]byte, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	dst, err := m.path(pu.Path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %w", u, &statusError{code: resp.StatusCode})
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	etag := resp.Header.Get("ETag")
	if keep == 0 && etag != "" {
		m.mu.Lock()
		have := m.byETag[etag]
		m.mu.Unlock()
		if have == dst {
			m.count(0, false)
			return nil, nil
		}
		if have != "" {
			_ = os.Remove(dst)
			if err := os.Link(have, dst); err != nil {
				return nil, err
			}
			m.count(0, false)
			return nil, nil
		}
	}
	var body []byte
	var n int64
	err = atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		if keep > 0 {
			b, err := io.ReadAll(io.LimitReader(resp.Body, keep))
			body, n = b, int64(len(b))
			if err != nil {
				return err
			}
			_, err = w.Write(b)
			return err
		}
		var err error
		n, err = io.Copy(w, resp.Body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return nil, fmt.Errorf("GET %s: %w", u, errShort)
	}
	if keep == 0 && etag != "" {
		m.mu.Lock()
		m.byETag[etag] = dst
		m.mu.Unlock()
	}
	m.count(n, true)
	return body, nil
}

func (m *mirror) count(n int64, stored bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.res.Files++
	m.res.Bytes += n
	if stored {
		m.res.Stored++
	}
}

// path maps a URL path into the docroot; it never leaves it.
func (m *mirror) path(p string) (string, error) {
	clean := filepath.Clean("/" + p)
	if clean == "/" || strings.Contains(clean, "\x00") {
		return "", fmt.Errorf("URL path %q: nothing to store", p)
	}
	return filepath.Join(m.req.Docroot, clean), nil
}
