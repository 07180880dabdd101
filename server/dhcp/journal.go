package dhcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Journal files inside StateDir. Every lease change that belongs on disk is
// appended to JournalFile, one JSON line, and fsynced before the reply that
// depends on it leaves (group commit: the changes of all workers that
// arrive while one fsync runs share the next). Compaction writes the whole
// table to LeasesFile (with the number of the last change it contains) and
// starts a new journal; journalOldFile is the previous journal until that
// write is durable.
const (
	JournalFile    = "leases.journal"
	journalOldFile = "leases.journal.1"
)

// stateFree in a journal record means "the address holds nothing now".
const stateFree = "free"

// journalRecord is one journal line: the state of IP after change Seq.
type journalRecord struct {
	Seq     uint64     `json:"seq"`
	IP      netip.Addr `json:"ip"`
	MAC     string     `json:"mac,omitempty"`
	Node    string     `json:"node,omitempty"`
	State   string     `json:"state"`
	Expires time.Time  `json:"expires,omitzero"`
}

// durable is a change on its way to stable storage.
type durable interface {
	// whenDurable calls fn once the change is on disk (err nil) or could
	// not be written. fn may run on another goroutine, or at once.
	whenDurable(fn func(err error))
}

// commitBatch is the journal lines appended while the previous batch was
// being written: one write and one fsync for all of them.
type commitBatch struct {
	j      *journal
	buf    []byte
	rotate bool // start a new journal file before writing this batch
	// Guarded by j.mu:
	written bool
	err     error
	after   []func(error)
}

func (b *commitBatch) whenDurable(fn func(error)) { b.onWritten(fn, maxWaiting) }

// onWritten calls fn once b is written, unless limit callbacks already
// wait (then at once, with errJournalBacklog).
func (b *commitBatch) onWritten(fn func(error), limit int) {
	b.j.mu.Lock()
	if b.written || len(b.after) >= limit {
		err := b.err
		if !b.written {
			err = errJournalBacklog
		}
		b.j.mu.Unlock()
		fn(err)
		return
	}
	b.after = append(b.after, fn)
	b.j.mu.Unlock()
}

// commitDelay is how long the writer lets lines gather before a write: it
// adds at most this much to an ACK and saves an fdatasync per ACK under load.
// 10 ms, not 2: every fdatasync blocks long enough for the Go runtime's
// sysmon to take the P back and then poll every 20 µs for a millisecond,
// so the fsync rate drives much of the CPU per lease. At 6,000 DORA/s,
// 5 ms cost 18 % less CPU per DORA than 2 ms, and 10 ms 8 % less than 5 ms
// (BENCHMARKS.md, DHCP CPU); a client waits a second or more before it
// asks again.
const commitDelay = 10 * time.Millisecond

// maxWaiting bounds the replies held for one journal write (a stalled
// disk must not make them pile up); more are answered with
// errJournalBacklog, i.e. not sent.
const maxWaiting = 4096

var errJournalBacklog = errors.New("lease journal write backlog")

// journal is the append-only lease log with a single writer goroutine (run).
type journal struct {
	dir string
	log *slog.Logger

	mu     sync.Mutex
	cur    *commitBatch   // collecting lines
	sealed []*commitBatch // waiting for the writer, in order
	wake   chan struct{}  // capacity 1: "there is something to write"

	// Writer goroutine only:
	f    *os.File
	size int64
	// big receives a value when the journal outgrew compactAt (capacity 1).
	big       chan struct{}
	compactAt int64
	onWrite   func(error) // called after every batch; set before run
}

// openJournal opens dir/JournalFile for appending (created when missing).
func openJournal(dir string, compactAt int64, log *slog.Logger) (*journal, error) {
	f, err := os.OpenFile(filepath.Join(dir, JournalFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lease journal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open lease journal: %w", err)
	}
	j := &journal{dir: dir, log: log, f: f, size: st.Size(), wake: make(chan struct{}, 1),
		big: make(chan struct{}, 1), compactAt: compactAt}
	j.cur = &commitBatch{j: j}
	return j, nil
}

// append adds one record to the current batch and returns the batch.
func (j *journal) append(r *journalRecord) *commitBatch {
	j.mu.Lock()
	b := j.cur
	b.buf = appendRecord(b.buf, r)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return b
}

// rotate seals the current batch and makes the next one start a new
// journal file; the returned batch is durable once the switch is done.
// Called under the table lock, so the lines before it are exactly the
// changes of the snapshot taken with it.
func (j *journal) rotate() *commitBatch {
	j.mu.Lock()
	j.sealed = append(j.sealed, j.cur)
	next := &commitBatch{j: j, rotate: true}
	j.cur = next
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return next
}

// next returns the batch to write, or nil.
func (j *journal) next() *commitBatch {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.sealed) > 0 {
		b := j.sealed[0]
		j.sealed = j.sealed[1:]
		return b
	}
	if len(j.cur.buf) > 0 || j.cur.rotate {
		b := j.cur
		j.cur = &commitBatch{j: j}
		return b
	}
	return nil
}

// run writes batches until stop is closed and everything appended before
// is written; then it closes the file.
func (j *journal) run(stop <-chan struct{}) {
	for {
		for b := j.next(); b != nil; b = j.next() {
			err := j.write(b)
			if j.onWrite != nil {
				j.onWrite(err)
			}
			j.mu.Lock()
			b.written, b.err = true, err
			after := b.after
			b.after = nil
			j.mu.Unlock()
			for _, fn := range after {
				fn(err)
			}
		}
		select {
		case <-j.wake:
			// Group commit: let the lines of the next ~10 ms join this
			// write, so one fdatasync (and one wake-up) serves them all.
			time.Sleep(commitDelay)
		case <-stop:
			if b := j.next(); b != nil {
				j.mu.Lock()
				j.sealed = append([]*commitBatch{b}, j.sealed...)
				j.mu.Unlock()
				continue
			}
			j.f.Close()
			return
		}
	}
}

// write switches files when asked, then appends b and fsyncs. A failed
// write is cut off again so the file never holds a torn line before good
// ones.
func (j *journal) write(b *commitBatch) error {
	if b.rotate {
		if err := j.switchFile(); err != nil {
			// The lines go to the current file; the next compaction retries.
			j.log.Error("dhcp: lease journal", "err", err)
		}
	}
	if len(b.buf) == 0 {
		return nil
	}
	if _, err := j.f.Write(b.buf); err != nil {
		_ = j.f.Truncate(j.size)
		return fmt.Errorf("append to lease journal: %w", err)
	}
	if err := syncData(j.f); err != nil {
		_ = j.f.Truncate(j.size)
		return fmt.Errorf("sync lease journal: %w", err)
	}
	j.size += int64(len(b.buf))
	if j.size >= j.compactAt {
		select {
		case j.big <- struct{}{}:
		default:
		}
	}
	return nil
}

// switchFile moves the journal to journalOldFile and starts an empty one.
// When an older journalOldFile is still there (its compaction failed), the
// journal is kept as it is: records are numbered, so a later snapshot
// still supersedes what they say.
func (j *journal) switchFile() error {
	cur := filepath.Join(j.dir, JournalFile)
	old := filepath.Join(j.dir, journalOldFile)
	if _, err := os.Lstat(old); err == nil {
		return nil
	}
	if err := os.Rename(cur, old); err != nil {
		return fmt.Errorf("rotate lease journal: %w", err)
	}
	f, err := os.OpenFile(cur, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		// Keep appending to the moved file; the next rotation retries.
		_ = os.Rename(old, cur)
		return fmt.Errorf("rotate lease journal: %w", err)
	}
	syncDir(j.dir)
	j.f.Close()
	j.f, j.size = f, 0
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// appendRecord appends r as one JSON line, the encoding json.Marshal gives
// for journalRecord, without its reflection (it runs for every ACK).
func appendRecord(b []byte, r *journalRecord) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"ip":"`...)
	b = r.IP.AppendTo(b)
	b = append(b, '"')
	if r.MAC != "" {
		b = append(b, `,"mac":`...)
		b = appendJSONString(b, r.MAC)
	}
	if r.Node != "" {
		b = append(b, `,"node":`...)
		b = appendJSONString(b, r.Node)
	}
	b = append(b, `,"state":`...)
	b = appendJSONString(b, r.State)
	if !r.Expires.IsZero() {
		b = append(b, `,"expires":"`...)
		b = r.Expires.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string: plainly when it needs no
// escaping (MACs, states, node names), else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
