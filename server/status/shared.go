package status

// Several wwservers sharing one cluster (the etcd backend) show one status
// table: each server tells a Sharer every change it records for a node and
// merges what the others recorded (Merge). Records carry the server that
// made them (Record.Server, in /status JSON as "server").

// Sharer receives every change this server records for a configured node.
// Put must not block (the etcd publisher only updates a map).
type Sharer interface {
	Put(node string, r Record)
}

// Share makes the store record serverID in its records and tell sh about
// every local change. Call it before the store is used.
func (s *Store) Share(serverID string, sh Sharer) {
	s.serverID = serverID
	s.sharer.Store(&sh)
}

// Merge applies a record another server made for node if it is news: seen
// later than what this store has, or seen at the same second with another
// stage or file. It never goes back to the Sharer (no echo between
// servers). It reports whether the record was applied.
func (s *Store) Merge(node string, r Record) bool {
	if node == "" {
		return false
	}
	sh := s.shard(node)
	sh.mu.Lock()
	cur, ok := sh.m[node]
	apply := !ok || r.LastSeen > cur.LastSeen ||
		(r.LastSeen == cur.LastSeen && (r.Stage != cur.Stage || r.Sent != cur.Sent) && r.Server != cur.Server)
	if apply {
		if r.Heartbeat == nil {
			r.Heartbeat = cur.Heartbeat
		}
		sh.m[node] = r
		s.version.Add(1)
		if !ok || r.Stage != cur.Stage || r.Sent != cur.Sent || r.MAC != cur.MAC || r.IPAddr != cur.IPAddr {
			s.major.Add(1)
		}
	}
	sh.mu.Unlock()
	return apply
}
