// Package hostkeys keeps each node's SSH host keys and the cluster's root
// key on the server, under TREE/hostkeys (0700; every file 0600), so a
// disk-less node presents the same host key after every boot and the head
// node can trust it:
//
//	hostkeys/nodes/NAME/ssh_host_{ed25519,ecdsa,rsa}_key{,.pub}
//	hostkeys/id_ed25519, id_ed25519.pub   root's key on the head node; in every node's authorized_keys
//	hostkeys/ssh_known_hosts              every node's ed25519 key by name and addresses (wwserver ssh keys)
//
// A node's ed25519 and ecdsa keys are made the first time its runtime overlay
// is rendered (a millisecond); RSA keys (seconds each) only by `wwserver ssh
// keys`. Keys are written once and never replaced; a deleted node's keys are
// removed by `wwserver ssh prune` (also run by `wwserver ssh keys`).
package hostkeys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/atomicfile"
)

// Key types, in the order sshd's default HostKey lines name them.
const (
	Ed25519 = "ed25519"
	ECDSA   = "ecdsa"
	RSA     = "rsa"
)

// Cheap are the types made when a node's runtime overlay is first rendered.
var Cheap = []string{Ed25519, ECDSA}

// All are the types `wwserver ssh keys` makes.
var All = []string{Ed25519, ECDSA, RSA}

// Dir is the directory under the served tree.
const Dir = "hostkeys"

// KnownHostsFile is the head node's known_hosts, in Dir.
const KnownHostsFile = "ssh_known_hosts"

// Store is the key directory of one served tree.
type Store struct {
	dir string
	mu  sync.Mutex // serialises creation in this process (rename keeps other processes safe)
}

// New returns the store of the served tree at root.
func New(root string) *Store { return &Store{dir: filepath.Join(root, Dir)} }

// Path returns the path of name inside the store.
func (s *Store) Path(name ...string) string {
	return filepath.Join(append([]string{s.dir}, name...)...)
}

// File is one key file as delivered to a node (name in /etc/ssh).
type File struct {
	Name    string
	Content string
}

func keyFile(typ string) string { return "ssh_host_" + typ + "_key" }

// Node returns the node's key files (private and .pub, in All's order)
// without making any; none when it has no keys yet.
func (s *Store) Node(name string) ([]File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	dir := s.Path("nodes", name)
	var out []File
	for _, typ := range All {
		for _, f := range []string{keyFile(typ), keyFile(typ) + ".pub"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("host keys of %s: %w", name, err)
			}
			out = append(out, File{f, string(b)})
		}
	}
	return out, nil
}

// Ensure makes the node's keys of types that are missing and returns all
// its key files. Existing keys are never replaced.
func (s *Store) Ensure(name string, types []string) ([]File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if s.hasAll(name, types) {
		return s.Node(name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := s.Path("nodes", name)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := s.mkdirNodes(); err != nil {
			return nil, err
		}
		tmp, err := s.prepare(name, types)
		if err != nil {
			return nil, err
		}
		if err := s.commit(map[string]string{name: tmp}); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("host keys of %s: %w", name, err)
	} else if err := writeKeys(dir, name, types, writeFile); err != nil {
		return nil, err
	}
	return s.Node(name)
}

// hasAll reports whether the node has every key type of types (the .pub of
// a pair is written last): the common case, answered without the lock.
func (s *Store) hasAll(name string, types []string) bool {
	for _, typ := range types {
		if _, err := os.Stat(s.Path("nodes", name, keyFile(typ)+".pub")); err != nil {
			return false
		}
	}
	return true
}

// prepare makes a new node's keys whole in a temporary directory (not yet
// synced): commit syncs and renames it into place, so a reader sees no
// keys or all of them. The nodes directory exists (mkdirNodes).
func (s *Store) prepare(name string, types []string) (string, error) {
	tmp, err := os.MkdirTemp(s.Path("nodes"), ".new-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("host keys of %s: %w", name, err)
	}
	plain := func(path string, data []byte) error {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("host keys: %w", err)
		}
		return nil
	}
	if err := writeKeys(tmp, name, types, plain); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// commit puts prepared directories (node name → temporary directory) in
// place: one syncfs makes all their files durable before any is renamed
// (one disk flush for a whole generation instead of one per file), then the
// renames and one sync of the nodes directory. A node another process made
// meanwhile keeps its keys; the temporary directories are removed.
func (s *Store) commit(prepared map[string]string) error {
	if len(prepared) == 0 {
		return nil
	}
	defer func() {
		for _, tmp := range prepared {
			os.RemoveAll(tmp)
		}
	}()
	nodes, err := os.Open(s.Path("nodes"))
	if err != nil {
		return fmt.Errorf("host keys: %w", err)
	}
	defer nodes.Close()
	if err := unix.Syncfs(int(nodes.Fd())); err != nil {
		return fmt.Errorf("host keys: syncfs: %w", err)
	}
	for name, tmp := range prepared {
		err := os.Rename(tmp, s.Path("nodes", name))
		if err != nil && !errors.Is(err, fs.ErrExist) && !isNotEmpty(err) {
			return fmt.Errorf("host keys of %s: %w", name, err)
		}
	}
	if err := nodes.Sync(); err != nil {
		return fmt.Errorf("host keys: %w", err)
	}
	return nil
}

// mkdirNodes makes the store's directory and its nodes directory (0700).
func (s *Store) mkdirNodes() error { return mkdirPrivate(s.dir, s.Path("nodes")) }

// writeKeys writes the keys of types that dir lacks with write (the .pub
// last: its presence means the pair).
func writeKeys(dir, node string, types []string, write func(string, []byte) error) error {
	for _, typ := range types {
		priv := filepath.Join(dir, keyFile(typ))
		if _, err := os.Stat(priv + ".pub"); err == nil {
			continue
		}
		pemBlock, pub, err := generate(typ, "root@"+node)
		if err != nil {
			return fmt.Errorf("host key %s of %s: %w", typ, node, err)
		}
		if err := write(priv, pem.EncodeToMemory(pemBlock)); err != nil {
			return err
		}
		if err := write(priv+".pub", pub); err != nil {
			return err
		}
	}
	return nil
}

// generate makes one key: its OpenSSH private key and authorized_keys line.
func generate(typ, comment string) (*pem.Block, []byte, error) {
	var priv crypto.Signer
	var err error
	switch typ {
	case Ed25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case ECDSA:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA:
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, nil, fmt.Errorf("unknown key type %q", typ)
	}
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n") + " " + comment + "\n"
	return block, []byte(line), nil
}

// writeFile writes a 0600 file atomically (server/atomicfile).
func writeFile(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o600)
}

func mkdirPrivate(dirs ...string) error {
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("host keys: %w", err)
		}
	}
	return nil
}

func isNotEmpty(err error) bool {
	var le *os.LinkError
	return errors.As(err, &le) && strings.Contains(le.Err.Error(), "not empty")
}

// ClusterKey returns root's public key line on the head node
// (hostkeys/id_ed25519.pub), making the pair the first time.
func (s *Store) ClusterKey() (string, error) {
	pubPath := s.Path("id_ed25519.pub")
	if b, err := os.ReadFile(pubPath); err == nil {
		return string(b), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, err := os.ReadFile(pubPath); err == nil {
		return string(b), nil
	}
	if err := mkdirPrivate(s.dir); err != nil {
		return "", err
	}
	block, pub, err := generate(Ed25519, "root@wwserver")
	if err != nil {
		return "", fmt.Errorf("cluster key: %w", err)
	}
	if err := writeFile(s.Path("id_ed25519"), pem.EncodeToMemory(block)); err != nil {
		return "", err
	}
	if err := writeFile(pubPath, pub); err != nil {
		return "", err
	}
	return string(pub), nil
}

// Stamp identifies the set of nodes with keys (the nodes directory's
// modification time changes when one is added or removed) and the cluster
// key: part of the cache key of what is rendered from them.
func (s *Store) Stamp() string {
	var b strings.Builder
	for _, p := range []string{s.Path("nodes"), s.Path("id_ed25519.pub")} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d.%d;", fi.ModTime().UnixNano(), fi.Size())
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}

// NodeStamp identifies one node's key files (its directory changes when a
// key type is added).
func (s *Store) NodeStamp(name string) string {
	if checkName(name) != nil {
		return "-"
	}
	fi, err := os.Stat(s.Path("nodes", name))
	if err != nil {
		return "-"
	}
	return fmt.Sprint(fi.ModTime().UnixNano())
}

// Nodes lists the nodes that have keys.
func (s *Store) Nodes() ([]string, error) {
	ents, err := os.ReadDir(s.Path("nodes"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("host keys: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Prune removes the keys of nodes not in keep and returns their names.
func (s *Store) Prune(keep []string) ([]string, error) {
	have, err := s.Nodes()
	if err != nil {
		return nil, err
	}
	var gone []string
	for _, n := range have {
		if slices.Contains(keep, n) {
			continue
		}
		if err := os.RemoveAll(s.Path("nodes", n)); err != nil {
			return gone, fmt.Errorf("host keys of %s: %w", n, err)
		}
		gone = append(gone, n)
	}
	return gone, nil
}

// checkName refuses names that are not a plain directory name.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("host keys: %q is not a node name", name)
	}
	return nil
}

// SSHDConfig is an sshd_config.d drop-in naming the private keys of files
// as sshd's HostKeys, so it offers none the image was built with.
func SSHDConfig(files []File) File {
	var b strings.Builder
	b.WriteString("# rendered by wwserver: this node's own host keys (hostkeys/ on the server)\n")
	for _, f := range files {
		if !strings.HasSuffix(f.Name, ".pub") {
			fmt.Fprintf(&b, "HostKey /etc/ssh/%s\n", f.Name)
		}
	}
	return File{"ww-hostkeys.conf", b.String()}
}

// EnsureAll makes the missing keys of types for every node in names,
// workers at a time, and returns how many nodes got new keys. New nodes'
// keys are prepared in parallel and committed together (one disk flush);
// a node that has some keys gets the missing types through Ensure.
func (s *Store) EnsureAll(names []string, types []string, workers int) (int, error) {
	var fresh, partial []string
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if err := checkName(n); err != nil {
			return 0, err
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		switch _, err := os.Stat(s.Path("nodes", n)); {
		case errors.Is(err, fs.ErrNotExist):
			fresh = append(fresh, n)
		case err != nil:
			return 0, fmt.Errorf("host keys of %s: %w", n, err)
		case !s.hasAll(n, types):
			partial = append(partial, n)
		}
	}
	s.mu.Lock()
	prepared, err := s.prepareAll(fresh, types, workers)
	if err == nil {
		err = s.commit(prepared)
	}
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	for _, n := range partial {
		if _, err := s.Ensure(n, types); err != nil {
			return len(fresh), err
		}
	}
	return len(fresh) + len(partial), nil
}

// prepareAll runs prepare for names, workers at a time (key generation is
// the CPU part): node name → temporary directory.
func (s *Store) prepareAll(names []string, types []string, workers int) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if err := s.mkdirNodes(); err != nil {
		return nil, err
	}
	workers = max(1, min(workers, len(names)))
	type result struct {
		name, tmp string
		err       error
	}
	jobs := make(chan string)
	results := make(chan result)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				tmp, err := s.prepare(n, types)
				results <- result{n, tmp, err}
			}
		}()
	}
	go func() {
		for _, n := range names {
			jobs <- n
		}
		close(jobs)
		wg.Wait()
		close(results)
	}()
	prepared := make(map[string]string, len(names))
	var errs []error
	for r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		prepared[r.name] = r.tmp
	}
	if err := errors.Join(errs...); err != nil {
		for _, tmp := range prepared {
			os.RemoveAll(tmp)
		}
		return nil, err
	}
	return prepared, nil
}

// Remove deletes the keys of the named nodes (`wwserver node delete`);
// names without keys are skipped.
func (s *Store) Remove(names []string) error {
	for _, n := range names {
		if checkName(n) != nil {
			continue
		}
		if err := os.RemoveAll(s.Path("nodes", n)); err != nil {
			return fmt.Errorf("host keys of %s: %w", n, err)
		}
	}
	return nil
}
