// Package statustest has test helpers for code that records status events.
package statustest

import (
	"sync"

	"github.com/wwcluster/ww/server/status"
)

// Recorder is a status.Recorder that keeps every event, for tests.
type Recorder struct {
	mu     sync.Mutex
	events []status.Event
}

// Record implements status.Recorder.
func (r *Recorder) Record(e status.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// All returns a copy of the events recorded so far, oldest first.
func (r *Recorder) All() []status.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]status.Event(nil), r.events...)
}

// Find returns the first event whose Sent is sent.
func (r *Recorder) Find(sent string) (status.Event, bool) {
	for _, e := range r.All() {
		if e.Sent == sent {
			return e, true
		}
	}
	return status.Event{}, false
}
