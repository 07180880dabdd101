// Package health is wwserver's small health registry: each component
// (config, status, build, dhcp, …) reports ok or degraded with a reason, and
// /healthz lists them. It also holds the log limiter that keeps a repeated
// failure from logging every second.
package health

import (
	"sort"
	"sync"
	"time"
)

// Reporter is what components report into: err == nil means ok, otherwise
// degraded with err's text as the reason. Cheap; call it on every outcome.
type Reporter interface {
	Report(component string, err error)
}

// Component is one component's state.
type Component struct {
	Name   string    `json:"name"`
	OK     bool      `json:"ok"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"` // when it entered this state
}

// Registry holds the latest state of each component. The zero value is not
// usable; use New.
type Registry struct {
	now   func() time.Time
	mu    sync.Mutex
	comps map[string]Component
}

// New returns an empty registry (healthy until a component says otherwise).
func New() *Registry {
	return &Registry{now: time.Now, comps: map[string]Component{}}
}

// Report implements Reporter.
func (r *Registry) Report(component string, err error) {
	c := Component{Name: component, OK: err == nil}
	if err != nil {
		c.Reason = err.Error()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.comps[component]; ok && old.OK == c.OK && old.Reason == c.Reason {
		return
	}
	c.Since = r.now()
	r.comps[component] = c
}

// Components returns every component's state, sorted by name, and whether
// all are ok.
func (r *Registry) Components() (list []Component, healthy bool) {
	r.mu.Lock()
	list = make([]Component, 0, len(r.comps))
	for _, c := range r.comps {
		list = append(list, c)
	}
	r.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	healthy = true
	for _, c := range list {
		healthy = healthy && c.OK
	}
	return list, healthy
}

// Limiter lets a repeated message through once per interval per key (for
// example the error text), so a failure that repeats every second logs
// once a minute, and counts the messages it holds back. Keys not seen for
// an interval are forgotten, so the map stays small.
type Limiter struct {
	every time.Duration
	now   func() time.Time
	mu    sync.Mutex
	last  map[string]limited
}

// limited is a key's last message let through and the count held back since.
type limited struct {
	at      time.Time
	skipped int64
}

// DefaultLogEvery is how often one distinct error is logged again.
const DefaultLogEvery = time.Minute

// maxLimiterKeys bounds the limiter's memory; past it, it is cleared.
const maxLimiterKeys = 1024

// NewLimiter returns a limiter letting each key through once per every,
// measured with now (nil: time.Now).
func NewLimiter(every time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{every: every, now: now, last: map[string]limited{}}
}

// Allow reports whether a message with key should be logged now.
func (l *Limiter) Allow(key string) bool {
	_, ok := l.AllowCount(key)
	return ok
}

// AllowCount is Allow that also reports, when it lets a message through,
// how many with key it held back since the last one (for a flood's
// "N unlogged" attribute).
func (l *Limiter) AllowCount(key string) (skipped int64, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t.at) < l.every {
		t.skipped++
		l.last[key] = t
		return 0, false
	}
	skipped = l.last[key].skipped
	if len(l.last) >= maxLimiterKeys {
		for k, t := range l.last {
			if now.Sub(t.at) >= l.every {
				delete(l.last, k)
			}
		}
		if len(l.last) >= maxLimiterKeys {
			clear(l.last)
		}
	}
	l.last[key] = limited{at: now}
	return skipped, true
}
