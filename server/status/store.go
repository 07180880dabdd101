package status

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/health"
	"github.com/wwcluster/ww/server/nodeapi"
)

// FileName is the status file's name under the state directory.
const FileName = "status.json"

// MaxUnknown caps how many unknown MACs are remembered; past it the ones seen
// longest ago are forgotten, so a flood of random MACs cannot grow memory.
const MaxUnknown = 4096

// UnknownMaxAge is how long an unknown MAC not heard from again is kept
// (Expire drops older ones).
const UnknownMaxAge = 24 * time.Hour

// RemovedMaxAge is how long the status of a node no longer in nodes.toml is
// kept (hidden from reports) before Expire drops it. A config edit never
// deletes status history: a node removed by mistake and put back keeps its
// stage and last seen. `wwserver status prune` drops it at once.
const RemovedMaxAge = 30 * 24 * time.Hour

// HealthComponent is the name the store reports its flushes under.
const HealthComponent = "status"

// DefaultFlushInterval is how often Run writes the store to disk when a
// stage, file sent or address changed.
const DefaultFlushInterval = time.Second

// DefaultSeenFlushInterval is how often Run writes the store when only last
// seen times (heartbeats) changed: at most this much of them is lost in a
// crash, and steady heartbeats of many nodes do not rewrite the file each second.
const DefaultSeenFlushInterval = 30 * time.Second

// DefaultCacheAge is how long JSON may serve cached bytes while the status changes.
const DefaultCacheAge = 250 * time.Millisecond

// fileVersion is the status.json format version.
const fileVersion = 1

// Heartbeat is a node's last heartbeat as the store keeps it: what
// wwclient reported in POST /heartbeat/{mac}, without the name it gave.
type Heartbeat = nodeapi.AgentState

// Record is one node's or unknown MAC's status. It is stored by value; its
// Heartbeat pointer is never mutated once stored, so copies may share it.
type Record struct {
	MAC       string     `json:"mac,omitempty"`
	IPAddr    string     `json:"ipaddr,omitempty"`
	Stage     string     `json:"stage,omitempty"`
	Sent      string     `json:"sent,omitempty"`
	LastSeen  int64      `json:"last_seen"` // unix seconds
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	// Progress is the node's last download report (two-stage boot); only
	// set while Stage is the stage it reported for.
	Progress *Progress `json:"progress,omitempty"`
	// Server is the wwserver that recorded it (several servers share
	// status through etcd); empty with a single server.
	Server string `json:"server,omitempty"`
}

// Store is the in-memory node status table, saved through its Persister
// by Run. Record and RecordHeartbeat only take a mutex for a map update;
// all disk I/O and encoding happen outside it.
type Store struct {
	backend Persister // nil keeps the store in memory only
	path    string    // the file of a FileBackend, for Path
	log     *slog.Logger
	now     func() time.Time

	// Health, when set before Run, receives the outcome of every flush
	// (degraded with the reason while saving fails).
	Health health.Reporter
	logs   *health.Limiter // flush errors: one line per distinct error per minute

	// FlushInterval, SeenFlushInterval and CacheAge may be changed before
	// Run/JSON are first used.
	FlushInterval     time.Duration
	SeenFlushInterval time.Duration
	CacheAge          time.Duration

	seed   maphash.Seed
	shards [shardCount]shard // node name → record, spread over shards

	unknownMu sync.Mutex
	unknown   map[string]Record // by MAC (or IP when the MAC is not known)

	version atomic.Uint64 // bumped, under a shard's or unknownMu, on every change
	major   atomic.Uint64 // bumped likewise on changes of more than last seen/heartbeat

	interval atomic.Int64 // update interval in seconds, for Report

	flushMu   sync.Mutex // serialises Flush
	flushed   uint64     // version last written; under flushMu
	flushedM  uint64     // major version last written; under flushMu
	lastWrite time.Time  // when last written; under flushMu
	flushErr  string     // last flush error; under flushMu

	encMu sync.Mutex // one JSON encoding at a time
	cache atomic.Pointer[jsonCache]

	// Shared status (several servers, etcd): see shared.go.
	serverID string                 // set before use; recorded in Record.Server
	sharer   atomic.Pointer[Sharer] // told every local change of a node's record
}

// shardCount spreads nodes over this many locks, so Report and Flush hold
// any one lock for only 1/shardCount of the nodes and concurrent Records
// rarely meet.
const shardCount = 64

type shard struct {
	mu sync.Mutex
	m  map[string]Record
	_  [64 - 16]byte // one cache line per shard (mutex 8 + map 8 bytes)
}

func (s *Store) shard(node string) *shard {
	return &s.shards[maphash.String(s.seed, node)%shardCount]
}

type jsonCache struct {
	nodes    *config.Nodes
	version  uint64
	interval int64
	at       time.Time // when encoded
	unix     int64     // the report's Now
	data     []byte
}

// New returns an empty in-memory store that is never written to disk.
func New(log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{
		log:               log,
		now:               time.Now,
		FlushInterval:     DefaultFlushInterval,
		SeenFlushInterval: DefaultSeenFlushInterval,
		CacheAge:          DefaultCacheAge,
		seed:              maphash.MakeSeed(),
		unknown:           map[string]Record{},
	}
	s.logs = health.NewLimiter(health.DefaultLogEvery, func() time.Time { return s.now() })
	for i := range s.shards {
		s.shards[i].m = map[string]Record{}
	}
	s.interval.Store(60)
	return s
}

// Open returns a store persisted at path (normally state/status.json) by a
// FileBackend, loading it when present. A corrupt file is logged and
// renamed aside (path.corrupt-TIMESTAMP) and the store starts empty; other
// read errors are returned. An empty path gives an in-memory store.
func Open(path string, log *slog.Logger) (*Store, error) {
	if path == "" {
		return New(log), nil
	}
	s, err := OpenWith(&FileBackend{Path: path, Log: log}, log)
	if s != nil {
		s.path = path
	}
	return s, err
}

// OpenWith returns a store saved through p, loaded from it now.
func OpenWith(p Persister, log *slog.Logger) (*Store, error) {
	s := New(log)
	s.backend = p
	t, err := p.Load()
	if err != nil {
		return nil, err
	}
	for k, r := range t.Nodes {
		s.shard(k).m[k] = r
	}
	for k, r := range t.Unknown {
		s.unknown[k] = r
	}
	s.log.Info(fmt.Sprintf("status loaded: %d nodes", len(t.Nodes)), "unknown", len(t.Unknown))
	return s, nil
}

// Path is the status file, "" for an in-memory store.
func (s *Store) Path() string { return s.path }

// SetUpdateInterval sets the wwclient update interval reported as
// update_interval_seconds (default 60 s). Cheap; call it with each config
// snapshot.
func (s *Store) SetUpdateInterval(d time.Duration) {
	s.interval.Store(int64(d / time.Second))
}

// Record implements Recorder. HEARTBEAT events only refresh last seen (and
// the addresses); other stages, including NOT_FOUND, set stage and sent.
// Callers record only what the node itself did: a request refused for who
// sent it (server/provision's call.deny) is never recorded.
// Events without a node name are kept per MAC (or IP when the MAC is empty);
// events with neither are ignored.
func (s *Store) Record(ev Event) {
	s.record(ev, nil)
}

// RecordHeartbeat records a heartbeat of node (empty for an unknown MAC) and
// keeps what wwclient reported.
func (s *Store) RecordHeartbeat(node, mac, ip string, hb Heartbeat) {
	s.record(Event{Node: node, MAC: mac, IP: ip, Stage: StageHeartbeat}, &hb)
}

func (s *Store) record(ev Event, hb *Heartbeat) {
	from, changed, rec := s.update(ev, hb)
	if sh := s.sharer.Load(); sh != nil && ev.Node != "" {
		(*sh).Put(ev.Node, rec)
	}
	if changed {
		// One line per stage a node reaches, not one per request.
		s.log.Info("node stage", "node", ev.Node, "stage", ev.Stage, "from", dashEmpty(from),
			"sent", ev.Sent, "mac", ev.MAC, "ip", ev.IP)
	}
}

func dashEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// update applies ev under the lock of its map. It reports the previous
// stage when a configured node's stage changed.
func (s *Store) update(ev Event, hb *Heartbeat) (from string, stageChanged bool, rec Record) {
	t := ev.Time
	if t.IsZero() {
		t = s.now()
	}
	seen := t.Unix()
	var m map[string]Record
	key := ev.Node
	if key != "" {
		sh := s.shard(key)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		m = sh.m
	} else {
		key = ev.MAC
		if key == "" {
			key = ev.IP
		}
		if key == "" {
			return "", false, Record{}
		}
		s.unknownMu.Lock()
		defer s.unknownMu.Unlock()
		m = s.unknown
		if _, ok := m[key]; !ok && len(m) >= MaxUnknown {
			s.evictOldestUnknown(unknownEvictBatch)
		}
	}
	r, existed := m[key]
	old := r
	if ev.MAC != "" {
		r.MAC = ev.MAC
	}
	if ev.IP != "" {
		r.IPAddr = ev.IP
	}
	if ev.Stage != StageHeartbeat {
		r.Stage, r.Sent, r.Progress = ev.Stage, ev.Sent, ev.Progress
	}
	if hb != nil {
		r.Heartbeat = hb
	}
	if seen > r.LastSeen {
		r.LastSeen = seen
	}
	r.Server = s.serverID
	if existed && r == old {
		// The same answer again within the same second (a retry, a
		// reloaded script): nothing to write, save or show differently.
		return old.Stage, false, r
	}
	m[key] = r
	s.version.Add(1)
	// Unknown MACs are saved with the last-seen cadence: a flood of random
	// MACs must not rewrite the file every second.
	if ev.Node != "" && (!existed || r.Stage != old.Stage || r.Sent != old.Sent || r.MAC != old.MAC || r.IPAddr != old.IPAddr) {
		s.major.Add(1)
	}
	return old.Stage, ev.Node != "" && r.Stage != old.Stage, r
}

// Forget drops the status of the named nodes (or unknown MACs) and
// returns the names it had status for. It is the explicit `wwserver status
// prune NODES`; config edits never drop status.
func (s *Store) Forget(names ...string) []string {
	var dropped []string
	for _, name := range names {
		found := false
		sh := s.shard(name)
		sh.mu.Lock()
		if _, ok := sh.m[name]; ok {
			delete(sh.m, name)
			found = true
		}
		sh.mu.Unlock()
		s.unknownMu.Lock()
		if _, ok := s.unknown[name]; ok {
			delete(s.unknown, name)
			found = true
		}
		s.unknownMu.Unlock()
		if found {
			dropped = append(dropped, name)
		}
	}
	if len(dropped) > 0 {
		s.version.Add(1)
		s.major.Add(1)
		s.cache.Store(nil) // an admin's prune shows at once, not after CacheAge
	}
	return dropped
}

// ForgetRemoved drops the status of every node not in nodes (`wwserver
// status prune --removed`) and returns the names dropped, sorted.
func (s *Store) ForgetRemoved(nodes *config.Nodes) []string {
	if nodes == nil {
		return nil
	}
	return s.dropNodes(func(name string, _ Record) bool { return nodes.ByName[name] == nil })
}

// Expire drops what has aged out: nodes no longer in nodes unseen for
// RemovedMaxAge, and unknown MACs unseen for UnknownMaxAge. The server calls
// it now and then.
func (s *Store) Expire(nodes *config.Nodes) (removed, unknown int) {
	now := s.now().Unix()
	if nodes != nil {
		removed = len(s.dropNodes(func(name string, r Record) bool {
			return nodes.ByName[name] == nil && now-r.LastSeen > int64(RemovedMaxAge/time.Second)
		}))
	}
	s.unknownMu.Lock()
	for k, r := range s.unknown {
		if now-r.LastSeen > int64(UnknownMaxAge/time.Second) {
			delete(s.unknown, k)
			unknown++
		}
	}
	s.unknownMu.Unlock()
	if unknown > 0 {
		s.version.Add(1)
	}
	return removed, unknown
}

func (s *Store) dropNodes(drop func(string, Record) bool) []string {
	var names []string
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for name, r := range sh.m {
			if drop(name, r) {
				delete(sh.m, name)
				names = append(names, name)
			}
		}
		sh.mu.Unlock()
	}
	if len(names) > 0 {
		s.version.Add(1)
		s.major.Add(1)
		s.cache.Store(nil)
	}
	sort.Strings(names)
	return names
}

// unknownEvictBatch is how many unknown entries go at once when the table
// is full: one scan per batch instead of one per new MAC keeps a flood of
// random MACs cheap (a scan of MaxUnknown entries per request cost ~200 µs).
const unknownEvictBatch = MaxUnknown / 8

// evictOldestUnknown drops the n unknown entries seen longest ago (among
// entries seen in the same second, any). Caller holds unknownMu.
func (s *Store) evictOldestUnknown(n int) {
	if n <= 0 || len(s.unknown) == 0 {
		return
	}
	seen := make([]int64, 0, len(s.unknown))
	for _, r := range s.unknown {
		seen = append(seen, r.LastSeen)
	}
	slices.Sort(seen)
	cutoff := seen[min(n, len(seen))-1]
	atCutoff := n - sort.Search(len(seen), func(i int) bool { return seen[i] >= cutoff }) // how many at cutoff to drop
	for k, r := range s.unknown {
		switch {
		case r.LastSeen < cutoff:
			delete(s.unknown, k)
		case r.LastSeen == cutoff && atCutoff > 0:
			delete(s.unknown, k)
			atCutoff--
		}
	}
}

// Report is the answer of GET /status.
type Report struct {
	// Now is the server's time (unix seconds) when the report was made;
	// ages are computed against it so client clock skew does not matter.
	Now int64 `json:"now"`
	// UpdateIntervalSeconds is wwclient's heartbeat interval.
	UpdateIntervalSeconds int64 `json:"update_interval_seconds"`
	// Nodes holds every configured node, sorted by name.
	Nodes []NodeStatus `json:"nodes"`
	// Unknown holds MACs that asked but belong to no node, sorted by MAC.
	Unknown []NodeStatus `json:"unknown"`
}

// NodeStatus is one row of the report. For unknown MACs Name is the MAC
// (or the IP address when no MAC is known).
type NodeStatus struct {
	Name      string     `json:"name"`
	MAC       string     `json:"mac"`
	IPAddr    string     `json:"ipaddr"`
	Stage     string     `json:"stage"`
	Sent      string     `json:"sent"`
	LastSeen  int64      `json:"last_seen"` // unix seconds, 0 = never
	Heartbeat *Heartbeat `json:"heartbeat"`
	Progress  *Progress  `json:"progress,omitempty"` // the node's download report (two-stage boot)
	Server    string     `json:"server,omitempty"`   // which server saw it last (etcd backend)
}

// Report lists every node of nodes (never seen: empty stage, last_seen 0)
// and then the unknown MACs that are not (now) configured. Status kept for
// nodes no longer in nodes is left out.
func (s *Store) Report(nodes *config.Nodes) Report {
	r := Report{
		Now:                   s.now().Unix(),
		UpdateIntervalSeconds: s.interval.Load(),
	}
	var list []*config.Node
	if nodes != nil {
		list = nodes.List
	}
	r.Nodes = make([]NodeStatus, len(list))
	// Group the nodes by shard outside any lock, then visit each shard once.
	var count [shardCount]int32
	which := make([]uint8, len(list))
	for i, n := range list {
		sh := uint8(maphash.String(s.seed, n.Name) % shardCount)
		which[i] = sh
		count[sh]++
	}
	var start [shardCount + 1]int32
	for i := range count {
		start[i+1] = start[i] + count[i]
	}
	order := make([]int32, len(list))
	next := start
	for i, sh := range which {
		order[next[sh]] = int32(i)
		next[sh]++
	}
	for si := range s.shards {
		sh := &s.shards[si]
		sh.mu.Lock()
		for _, i := range order[start[si]:start[si+1]] {
			name := list[i].Name
			rec := sh.m[name]
			r.Nodes[i] = NodeStatus{Name: name, MAC: rec.MAC, IPAddr: rec.IPAddr, Stage: rec.Stage,
				Sent: rec.Sent, LastSeen: rec.LastSeen, Heartbeat: rec.Heartbeat, Progress: rec.Progress, Server: rec.Server}
		}
		sh.mu.Unlock()
	}
	s.unknownMu.Lock()
	r.Unknown = make([]NodeStatus, 0, len(s.unknown))
	for key, rec := range s.unknown {
		r.Unknown = append(r.Unknown, NodeStatus{Name: key, MAC: rec.MAC, IPAddr: rec.IPAddr, Stage: rec.Stage,
			Sent: rec.Sent, LastSeen: rec.LastSeen, Heartbeat: rec.Heartbeat, Progress: rec.Progress})
	}
	s.unknownMu.Unlock()
	// Fill in configured addresses where none was seen, outside the lock.
	for i, n := range list {
		ns := &r.Nodes[i]
		if ns.MAC == "" || ns.IPAddr == "" {
			p := n.Primary()
			if ns.MAC == "" {
				ns.MAC = p.HWAddr
			}
			if ns.IPAddr == "" {
				ns.IPAddr = p.IPAddr
			}
		}
	}
	if nodes != nil {
		kept := r.Unknown[:0]
		for _, u := range r.Unknown {
			if u.MAC == "" || nodes.ByMAC[u.MAC] == nil {
				kept = append(kept, u)
			}
		}
		r.Unknown = kept
	}
	sort.Slice(r.Unknown, func(i, j int) bool { return r.Unknown[i].Name < r.Unknown[j].Name })
	return r
}

// JSON returns Report(nodes) encoded as JSON. The bytes are cached and
// re-encoded only when something changed (status, node set, update interval,
// or the second of the report's "now"), and while the status keeps changing
// at most every CacheAge; during a re-encode other callers get the previous
// bytes. The result is shared and must not be modified.
func (s *Store) JSON(nodes *config.Nodes) ([]byte, error) { // the error is kept for handlers; encoding cannot fail today
	iv := s.interval.Load()
	c := s.cache.Load()
	if c != nil && c.nodes == nodes && c.interval == iv {
		if s.fresh(c) {
			return c.data, nil
		}
		// Stale: one caller re-encodes, the others keep getting the old bytes.
		if !s.encMu.TryLock() {
			return c.data, nil
		}
	} else {
		s.encMu.Lock()
	}
	defer s.encMu.Unlock()
	// Someone may have encoded while we waited.
	if c := s.cache.Load(); c != nil && c.nodes == nodes && c.interval == iv && s.fresh(c) {
		return c.data, nil
	}
	v := s.version.Load() // read before Report: a racing change makes a later call re-encode
	rep := s.Report(nodes)
	size := 64
	if c := s.cache.Load(); c != nil {
		size = len(c.data) + len(c.data)/8
	}
	data := appendReport(make([]byte, 0, size), &rep)
	s.cache.Store(&jsonCache{nodes: nodes, version: v, interval: iv, at: s.now(), unix: rep.Now, data: data})
	return data, nil
}

// fresh reports whether cached bytes may still be served.
func (s *Store) fresh(c *jsonCache) bool {
	now := s.now()
	if c.version == s.version.Load() && now.Unix() == c.unix {
		return true // identical to what an encode would give now
	}
	return now.Sub(c.at) < s.CacheAge
}

// Flush writes the store to its file if it changed since the last flush:
// to a temporary file in the same directory, fsynced, then renamed over the
// old one, so readers see the old or the new file, never a partial one.
func (s *Store) Flush() error {
	return s.flush(false)
}

// flush writes the store if it changed; with onlyDue, only when a major
// change is pending or last-seen changes have waited SeenFlushInterval.
func (s *Store) flush(onlyDue bool) error {
	if s.backend == nil {
		return nil
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	// Read the versions first: a change racing with the copy below is
	// either copied or leaves the store dirty for the next flush.
	v, mv := s.version.Load(), s.major.Load()
	if v == s.flushed {
		return nil
	}
	if onlyDue && mv == s.flushedM && s.now().Sub(s.lastWrite) < s.SeenFlushInterval {
		return nil
	}
	t := Table{Nodes: map[string]Record{}}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, r := range sh.m {
			t.Nodes[k] = r
		}
		sh.mu.Unlock()
	}
	s.unknownMu.Lock()
	t.Unknown = make(map[string]Record, len(s.unknown))
	for k, r := range s.unknown {
		t.Unknown[k] = r
	}
	s.unknownMu.Unlock()
	if err := s.backend.Save(t); err != nil {
		return err
	}
	s.flushed, s.flushedM, s.lastWrite = v, mv, s.now()
	return nil
}

// Run writes the store every FlushInterval when a stage, file sent or
// address changed, every SeenFlushInterval when only last-seen times did,
// and once more when ctx is done; it returns that last flush's error. Flush
// errors before that are logged (once per distinct error) and retried.
func (s *Store) Run(ctx context.Context) error {
	every := s.FlushInterval
	if every <= 0 {
		every = DefaultFlushInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			err := s.Flush()
			if err != nil {
				s.log.Error("final node status flush failed", "err", err)
			}
			return err
		case <-t.C:
			s.flushLogged()
		}
	}
}

// flushLogged flushes what is due and reports the outcome: to Health every
// time, to the log once per distinct error per minute (a full disk fails
// every second), and once when saving works again.
func (s *Store) flushLogged() {
	err := s.flush(true)
	if s.Health != nil {
		s.Health.Report(HealthComponent, err)
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	switch {
	case err != nil:
		s.flushErr = err.Error()
		if s.logs.Allow(s.flushErr) {
			s.log.Error("node status flush failed; will retry", "err", err)
		}
	case s.flushErr != "":
		s.flushErr = ""
		s.log.Info("node status flush works again", "file", s.path)
	}
}
