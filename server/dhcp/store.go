package dhcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wwcluster/ww/server/atomicfile"
)

// leaseStore is where the server keeps its leases; the handlers use only
// this. The files backend (fileStore: the in-memory leaseTable, a journal
// and leases.json) is the one implementation; an etcd backend (issue 11)
// would implement the same operations with transactions, its durable
// being the committed transaction.
//
// Every operation that changes what belongs on disk returns a durable (nil
// when nothing changed): the reply that depends on the change is sent only
// once it is durable.
type leaseStore interface {
	claim(ip netip.Addr, mac, node, state string, expires, now time.Time) (Lease, durable, error)
	claimReserved(ip netip.Addr, mac, node, state string, expires, now time.Time) (Lease, durable, error)
	allocate(p *pool, mac, node string, want netip.Addr, state string, expires, now time.Time) (Lease, durable, error)
	release(ip netip.Addr, mac string) (bool, durable)
	decline(ip netip.Addr, mac string, until, now time.Time) (bool, durable)
	quarantine(ip netip.Addr, until, now time.Time) (bool, durable)
	forgetOffer(mac string)
	byMACLease(mac string) (Lease, bool)
	lookupIP(ip netip.Addr) (Lease, bool)
	snapshot(withOffers bool) []Lease
	inUse(now time.Time) int
	// run does the backend's background work until ctx ends, then makes
	// every change durable; no operation may start after ctx ends.
	run(ctx context.Context)
	// health is false with the reason while changes cannot be stored.
	health() (ok bool, reason string)
	// lost says why leases were lost at load (a corrupt or unreadable
	// file); "" when none were.
	lost() string
}

// Compaction of the journal into leases.json.
const (
	// compactAt is the journal size that starts a compaction.
	compactAt = 32 << 20
	// compactEvery compacts a journal that changed, however small.
	compactEvery = 10 * time.Minute
)

// fileStore is the files backend: the table in memory, every change that
// belongs on disk appended to StateDir/leases.journal and fsynced (group
// commit), and the journal compacted into StateDir/leases.json now and
// then, in the background. With no directory it keeps leases in memory only.
type fileStore struct {
	*leaseTable
	dir   string
	log   *slog.Logger
	j     *journal
	onErr func() // counts failed writes

	mu      sync.Mutex
	problem string // why the table may be incomplete; "" when fine
	lastErr error  // last failed write; nil after a good one
}

// openFileStore loads dir's leases.json and journals (corrupt files are
// moved aside and reported by health), writes them back as one
// leases.json, and opens a new journal. dir "" gives a memory-only store.
func openFileStore(dir string, log *slog.Logger, onErr func()) (*fileStore, error) {
	s := &fileStore{leaseTable: newLeaseTable(), dir: dir, log: log, onErr: onErr}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lease state directory: %w", err)
	}
	n := s.load()
	if n > 0 {
		log.Info("dhcp: leases loaded", "dir", dir, "count", n)
	}
	if err := s.compact(false); err != nil {
		// Keep going: the journal still records every change.
		s.setErr(err)
		log.Error("dhcp: write leases", "err", err)
	}
	j, err := openJournal(dir, compactAt, log)
	if err != nil {
		return nil, err
	}
	j.onWrite = func(err error) {
		if err != nil {
			s.log.Error("dhcp: lease journal", "err", err)
		}
		s.setErr(err)
	}
	s.j = j
	s.attachJournal()
	return s, nil
}

// attachJournal makes the table hand its changes to the journal.
func (s *fileStore) attachJournal() {
	s.leaseTable.mu.Lock()
	s.leaseTable.log = s.j
	s.leaseTable.mu.Unlock()
}

// leaseFile is the on-disk form of the table: the leases after change Seq.
type leaseFile struct {
	Version int     `json:"version"`
	Seq     uint64  `json:"seq"`
	Leases  []Lease `json:"leases"`
}

// load reads leases.json and replays the journals; it returns the number
// of leases.
func (s *fileStore) load() int {
	path := filepath.Join(s.dir, LeasesFile)
	var f leaseFile
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		s.damage(path, fmt.Errorf("read %s: %w", path, err), false)
	default:
		if err := json.Unmarshal(data, &f); err != nil {
			s.damage(path, fmt.Errorf("parse %s: %w", path, err), true)
			f = leaseFile{}
		}
	}
	s.leaseTable.load(f.Leases)
	s.leaseTable.seq = f.Seq
	for _, name := range []string{journalOldFile, JournalFile} {
		s.replay(filepath.Join(s.dir, name), f.Seq)
	}
	return len(s.leaseTable.byIP)
}

// replay applies path's records numbered after seq. A last line cut short
// by a crash is dropped; any other bad line moves the file aside (the
// records before it are kept).
func (s *fileStore) replay(path string, seq uint64) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		s.damage(path, fmt.Errorf("read %s: %w", path, err), false)
		return
	}
	line := 0
	for len(data) > 0 {
		line++
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			s.log.Warn("dhcp: lease journal ends in a torn line (a crash during a write); dropped", "file", path, "line", line)
			return
		}
		var r journalRecord
		if err := json.Unmarshal(data[:i], &r); err != nil || !r.IP.Is4() || r.State == "" {
			if err == nil {
				err = errors.New("not a lease record")
			}
			s.damage(path, fmt.Errorf("%s line %d: %w", path, line, err), true)
			return
		}
		if r.Seq > seq {
			s.leaseTable.replay(&r)
		}
		data = data[i+1:]
	}
}

// damage records that path could not be used; moveAside renames it to
// path.corrupt-TIMESTAMP, like status.json.
func (s *fileStore) damage(path string, err error, moveAside bool) {
	reason := err.Error()
	if moveAside {
		aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405.000000000"))
		if rerr := os.Rename(path, aside); rerr != nil {
			s.log.Error("dhcp: lease file is corrupt and could not be moved aside", "file", path, "err", err, "rename_err", rerr)
			reason += "; could not move it aside: " + rerr.Error()
		} else {
			s.log.Error("dhcp: lease file is corrupt; moved aside, its leases are lost", "file", path, "moved_to", aside, "err", err)
			reason += "; moved to " + filepath.Base(aside)
		}
	} else {
		s.log.Error("dhcp: lease file unreadable; its leases are lost", "file", path, "err", err)
	}
	s.mu.Lock()
	if s.problem != "" {
		s.problem += "; "
	}
	s.problem += reason
	s.mu.Unlock()
}

func (s *fileStore) lost() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.problem
}

func (s *fileStore) setErr(err error) {
	s.mu.Lock()
	if err == nil && s.lastErr == nil {
		s.mu.Unlock()
		return
	}
	s.lastErr = err
	s.mu.Unlock()
	if err != nil && s.onErr != nil {
		s.onErr()
	}
}

func (s *fileStore) health() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr != nil {
		return false, "leases not written: " + s.lastErr.Error()
	}
	return true, ""
}

// compact writes the table to leases.json. With rotate (the journal
// writer running) the journal is switched in the same critical section as
// the snapshot, and the old one removed once leases.json is durable;
// without (at start and after the writer stopped) both journal files are
// removed.
func (s *fileStore) compact(rotate bool) error {
	t := s.leaseTable
	t.mu.Lock()
	ls := t.copyLocked(false)
	seq := t.seq
	var switched *commitBatch
	if rotate {
		switched = s.j.rotate()
	}
	t.mu.Unlock()
	if switched != nil {
		done := make(chan struct{})
		switched.onWritten(func(error) { close(done) }, math.MaxInt) // never refused

		<-done
	}
	sortLeases(ls)
	err := atomicfile.Write(filepath.Join(s.dir, LeasesFile), 0o644, func(w io.Writer) error {
		return encodeLeases(w, seq, ls)
	})
	if err != nil {
		return err
	}
	names := []string{journalOldFile}
	if !rotate {
		names = append(names, JournalFile)
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(s.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove compacted lease journal: %w", err)
		}
	}
	return nil
}

// encodeLeases writes the leases.json form, one lease per line.
func encodeLeases(w io.Writer, seq uint64, ls []Lease) error {
	if _, err := fmt.Fprintf(w, "{\"version\": 2, \"seq\": %d, \"leases\": [", seq); err != nil {
		return err
	}
	for i := range ls {
		b, err := json.Marshal(&ls[i])
		if err != nil {
			return fmt.Errorf("encode lease %s: %w", ls[i].IP, err)
		}
		sep := ",\n  "
		if i == 0 {
			sep = "\n  "
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "\n]}\n")
	return err
}

// run writes the journal and compacts it until ctx ends; then it writes
// what is left and a final leases.json.
func (s *fileStore) run(ctx context.Context) {
	if s.j == nil {
		<-ctx.Done()
		return
	}
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.j.run(stop)
	}()
	compact := func(rotate bool) {
		if err := s.compact(rotate); err != nil {
			s.setErr(err)
			s.log.Error("dhcp: compact lease journal", "err", err)
			return
		}
		s.setErr(nil)
	}
	tick := time.NewTicker(compactEvery)
	defer tick.Stop()
	written := s.currentSeq()
	// Compaction rewrites the whole table: space them at least 20 times
	// its duration apart, so a big table under churn costs at most ~5%.
	var earliest time.Time
	later := time.NewTimer(time.Hour)
	later.Stop()
	run := func() {
		if time.Now().Before(earliest) {
			later.Reset(time.Until(earliest))
			return
		}
		start := time.Now()
		seq := s.currentSeq()
		compact(true)
		written = seq
		earliest = time.Now().Add(20 * time.Since(start))
	}
	for {
		select {
		case <-ctx.Done():
			close(stop)
			<-writerDone
			compact(false)
			return
		case <-s.j.big:
			run()
		case <-later.C:
			run()
		case <-tick.C:
			if s.currentSeq() != written {
				run()
			}
		}
	}
}

func (s *fileStore) currentSeq() uint64 {
	s.leaseTable.mu.Lock()
	defer s.leaseTable.mu.Unlock()
	return s.leaseTable.seq
}
