package idle

import "time"

// recent is a set of keys remembered for a bounded time and count: at most
// cap keys, each forgotten window after it was added, oldest first. The
// projection uses it for the message ids it has seen (deduplication) and
// for the instances it has seen unloaded (tombstones). Memory is bounded
// by cap whatever the event rate; a key pushed out early by a burst is the
// price of that bound.
type recent struct {
	window time.Duration
	ring   []recentEntry // circular, oldest at head
	head   int
	size   int
	set    map[string]time.Time // key -> when added
}

type recentEntry struct {
	key string
	at  time.Time
}

func newRecent(capacity int, window time.Duration) *recent {
	if capacity <= 0 {
		panic("BUG: recent set needs a positive capacity")
	}
	return &recent{
		window: window,
		ring:   make([]recentEntry, capacity),
		set:    make(map[string]time.Time, min(capacity, 1024)),
	}
}

// has reports whether key was added less than window ago.
func (r *recent) has(key string, now time.Time) bool {
	at, ok := r.set[key]
	return ok && now.Sub(at) < r.window
}

// add remembers key from now on. Adding a key already present refreshes
// nothing: the first sighting decides when it is forgotten.
func (r *recent) add(key string, now time.Time) {
	r.prune(now)
	if _, ok := r.set[key]; ok {
		return
	}
	if r.size == len(r.ring) {
		r.popOldest()
	}
	r.ring[(r.head+r.size)%len(r.ring)] = recentEntry{key: key, at: now}
	r.size++
	r.set[key] = now
}

// prune forgets the keys older than window.
func (r *recent) prune(now time.Time) {
	for r.size > 0 && now.Sub(r.ring[r.head].at) >= r.window {
		r.popOldest()
	}
}

func (r *recent) popOldest() {
	e := r.ring[r.head]
	r.ring[r.head] = recentEntry{}
	r.head = (r.head + 1) % len(r.ring)
	r.size--

	// Only the entry that put the key in the set may take it out.
	if at, ok := r.set[e.key]; ok && at.Equal(e.at) {
		delete(r.set, e.key)
	}
}

func (r *recent) len() int { return r.size }
