package status

import (
	"sync"
	"testing"
)

type recordingSharer struct {
	mu   sync.Mutex
	puts map[string]Record
}

func (r *recordingSharer) Put(node string, rec Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.puts[node] = rec
}

func TestShareAndMerge(t *testing.T) {
	s := New(nil)
	sh := &recordingSharer{puts: map[string]Record{}}
	s.Share("srv0", sh)
	s.Record(Event{Node: "n1", MAC: "m1", Stage: StageKernel, Sent: "vmlinuz"})
	s.Record(Event{MAC: "unknown-mac", Stage: StageIPXE}) // unknown MACs are not shared
	if got := sh.puts["n1"]; got.Stage != StageKernel || got.Server != "srv0" {
		t.Fatalf("shared %+v", got)
	}
	if len(sh.puts) != 1 {
		t.Fatalf("shared %v, want only n1", sh.puts)
	}
	cur := sh.puts["n1"]
	// An older record from another server changes nothing.
	if s.Merge("n1", Record{Stage: StageIPXE, LastSeen: cur.LastSeen - 10, Server: "srv1"}) {
		t.Fatal("older record merged")
	}
	// A newer one wins, keeps the known heartbeat, and is not echoed back.
	delete(sh.puts, "n1")
	if !s.Merge("n1", Record{Stage: StageImage, Sent: "image", LastSeen: cur.LastSeen + 5, Server: "srv1"}) {
		t.Fatal("newer record not merged")
	}
	if len(sh.puts) != 0 {
		t.Fatalf("merge echoed to the sharer: %v", sh.puts)
	}
	sh2 := s.shard("n1")
	sh2.mu.Lock()
	r := sh2.m["n1"]
	sh2.mu.Unlock()
	if r.Stage != StageImage || r.Server != "srv1" {
		t.Fatalf("after merge: %+v", r)
	}
}
