package idle

import "time"

// pos is where an event stands in one node's stream of events: the seq and
// timestamp its Publisher stamped together under one lock.
type pos struct {
	seq uint64
	ts  time.Time
}

// restartSkew is how far two timestamps of one node must differ before
// they overrule the seqs.
const restartSkew = time.Second

// after reports whether a comes after b in one node's stream of events.
//
// Within one node process seq orders events and the timestamps agree with
// it. A node that restarts keeps its id but starts again at seq 1, so when
// the timestamps are more than restartSkew apart they decide: a lower seq
// with a much later timestamp is a new process, not an old event. Within
// restartSkew the seqs decide, which keeps a small wall-clock step on the
// node from reordering its events.
//
// # Notes
//
// A node restarted within restartSkew of its last heartbeat has its first
// events taken as old ones until its timestamps pass that heartbeat's by
// restartSkew; the next heartbeat then brings the projection up to date.
// A node whose wall clock steps back by more than restartSkew has its
// events taken as old until it is dropped for silence (its heartbeats look
// old too) and rejoins.
func after(a, b pos) bool {
	if a.ts.After(b.ts.Add(restartSkew)) {
		return true
	}
	if a.ts.Before(b.ts.Add(-restartSkew)) {
		return false
	}
	return a.seq > b.seq
}
