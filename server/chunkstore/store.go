// Package chunkstore keeps the chunks of chunked images (see package
// chunkimage) content-addressed in one directory, builds them from an
// uncompressed stream, serves them and prunes the ones no index uses.
//
// Chunk files are written to a temporary name and renamed; they are not
// fsynced one by one: Build ends with one syncfs(2) of the directory's file
// system, before the caller publishes the index that names them. A chunk
// found on disk is reused only after its bytes were hashed once by this
// process (a file left half-written by a crash is replaced, never served).
package chunkstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

const tmpPrefix = ".tmp-"

// ErrNotFound is returned (wrapped) for a chunk the store does not have.
var ErrNotFound = errors.New("chunk not in the store")

// ErrBadDigest is returned (wrapped) for a name that is not a digest.
var ErrBadDigest = errors.New("not a sha256 digest")

// Store is one chunk directory. It is safe for concurrent use.
type Store struct {
	dir string

	mu       sync.Mutex
	pins     map[string]int       // digests a build in flight has stored or reused
	verified map[string]struct{}  // on-disk chunks whose bytes this process checked
	served   map[string]time.Time // last time each chunk was opened for a client
}

// Open returns the store at dir, creating it (owner only, like the rest of
// the build cache).
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chunk store: %w", err)
	}
	return &Store{dir: dir, pins: map[string]int{}, verified: map[string]struct{}{}, served: map[string]time.Time{}}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(digest string) string { return filepath.Join(s.dir, digest) }

// OpenChunk opens a chunk for serving. A name that is not a digest is an
// ErrBadDigest, a chunk the store lacks an ErrNotFound. The chunk counts as
// used now (Prune keeps it).
func (s *Store) OpenChunk(digest string) (*os.File, fs.FileInfo, error) {
	if !chunkimage.ValidDigest(digest) {
		return nil, nil, fmt.Errorf("%q: %w", digest, ErrBadDigest)
	}
	f, err := openReadOnly(s.path(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("chunk %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("chunk %s: %w", digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("chunk %s: %w", digest, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("chunk %s: not a regular file: %w", digest, ErrNotFound)
	}
	s.mu.Lock()
	s.served[digest] = time.Now()
	s.mu.Unlock()
	return f, fi, nil
}

// openReadOnly opens a file for reading as os.Open does, in two system
// calls instead of six: os.Open tries to register a file it opened with the
// netpoller (fcntl to non-blocking, epoll_ctl refused for a regular file,
// fcntl back), which a chunk request paid on every open. os.NewFile takes
// the descriptor as it is (blocking, not polled; sendfile(2) reads it).
func openReadOnly(path string) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Has reports whether every chunk of ix is in the store with its size (a
// stat each: used when adopting an index an earlier process built).
func (s *Store) Has(ix *chunkimage.Index) error {
	for _, c := range ix.Chunks {
		fi, err := os.Stat(s.path(c.SHA256))
		if err != nil {
			return fmt.Errorf("chunk %s: %w", c.SHA256, err)
		}
		if fi.Size() != c.Size {
			return fmt.Errorf("chunk %s: %d bytes on disk, index says %d", c.SHA256, fi.Size(), c.Size)
		}
	}
	return nil
}

// pin marks digest as used by a build in flight (Prune leaves it).
func (s *Store) pin(digest string) {
	s.mu.Lock()
	s.pins[digest]++
	s.mu.Unlock()
}

// Pin keeps every chunk of ix from Prune until release is called.
func (s *Store) Pin(ix *chunkimage.Index) (release func()) {
	ds := make([]string, len(ix.Chunks))
	for i, c := range ix.Chunks {
		ds[i] = c.SHA256
		s.pin(c.SHA256)
	}
	return func() { s.unpin(ds) }
}

func (s *Store) unpin(digests []string) {
	s.mu.Lock()
	for _, d := range digests {
		if s.pins[d]--; s.pins[d] <= 0 {
			delete(s.pins, d)
		}
	}
	s.mu.Unlock()
}

// put stores a compressed chunk under its digest unless a verified copy is
// there. It reports whether the chunk was reused. The caller has pinned it.
func (s *Store) put(digest string, data []byte) (reused bool, err error) {
	p := s.path(digest)
	s.mu.Lock()
	_, ok := s.verified[digest]
	s.mu.Unlock()
	if ok {
		if fi, err := os.Stat(p); err == nil && fi.Size() == int64(len(data)) {
			return true, nil
		}
	} else if old, err := os.ReadFile(p); err == nil && chunkimage.Digest(old) == digest {
		s.markVerified(digest)
		return true, nil
	}
	f, err := os.CreateTemp(s.dir, tmpPrefix+digest[:16]+"-*")
	if err != nil {
		return false, fmt.Errorf("create chunk file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("write chunk %s: %w", digest[:16], err)
	}
	s.markVerified(digest)
	return false, nil
}

func (s *Store) markVerified(digest string) {
	s.mu.Lock()
	s.verified[digest] = struct{}{}
	s.mu.Unlock()
}

// Sync flushes the store's file system (syncfs), so that every chunk
// written so far is durable before an index naming them is published.
func (s *Store) Sync() error {
	fd, err := unix.Open(s.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync chunk store: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("sync chunk store: %w", err)
	}
	return nil
}

// Verify re-reads a stored chunk and checks its digest (for tests and
// `wwserver check`-like tools; serving does not re-hash).
func (s *Store) Verify(digest string) error {
	if !chunkimage.ValidDigest(digest) {
		return fmt.Errorf("%q: %w", digest, ErrBadDigest)
	}
	data, err := os.ReadFile(s.path(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("chunk %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if got := chunkimage.Digest(data); got != digest {
		s.mu.Lock()
		delete(s.verified, digest)
		s.mu.Unlock()
		return fmt.Errorf("chunk %s: content hashes to %s: %w", digest, got, chunkimage.ErrDigest)
	}
	return nil
}

// Prune removes chunk files older than cutoff that keep does not claim,
// that no build in flight uses and that were not served since cutoff, and
// stale temporary files. It returns how many files it removed.
func (s *Store) Prune(cutoff time.Time, keep func(digest string) bool) (int, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("prune chunk store: %w", err)
	}
	removed := 0
	var errs []error
	for _, de := range ents {
		name := de.Name()
		tmp := strings.HasPrefix(name, tmpPrefix)
		if !de.Type().IsRegular() || !tmp && !chunkimage.ValidDigest(name) {
			continue
		}
		fi, err := de.Info()
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		// keep is asked under s.mu, after the pins: a build remembers its
		// index (keep turns true) before it unpins, so a chunk is always
		// pinned or kept while an index names it.
		s.mu.Lock()
		busy := !tmp && (s.pins[name] > 0 || s.served[name].After(cutoff) || keep != nil && keep(name))
		if !busy {
			err = os.Remove(filepath.Join(s.dir, name))
			if err == nil {
				removed++
				delete(s.verified, name)
				delete(s.served, name)
			}
		}
		s.mu.Unlock()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Forget serve times of chunks gone meanwhile.
	s.mu.Lock()
	for d, t := range s.served {
		if t.Before(cutoff) {
			delete(s.served, d)
		}
	}
	s.mu.Unlock()
	return removed, errors.Join(errs...)
}
