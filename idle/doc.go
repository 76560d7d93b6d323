// Package idle is the idle monitor: it learns from NATS events how many
// streams each instance has open and asks the owning node to unload an
// instance that has had none for its idle timeout. The node keeps the
// capsule's socket bound, so the next client activates it again.
//
// The monitor knows the rest of astrid-node only through NATS: the events
// of package events and the unload request of package control.
//
// # Design
//
// A Projection is the state, built from events alone and free of I/O: per
// node, per instance, the number of open streams and since when it has had
// none. Duplicates (same Nats-Msg-Id) are dropped, a disconnect never
// takes a count below zero, an unloaded instance leaves a tombstone so a
// late event cannot bring it back, and each node's heartbeat replaces the
// counts with the node's own, which repairs whatever events were lost.
// The per-node seq (with the timestamp, see after) orders a node's events
// against its last heartbeat: an event the heartbeat already counts is
// stale and skipped.
//
// A Monitor feeds the projection from NATS, checks it every tick, and
// sends control.UnloadRequest{IfIdle: true} to the owning node for each
// instance that is due. The node is the authority: if it refuses because
// streams are open, the monitor takes its count. A request that gets no
// reply is retried with a backoff, and at most one is out per instance.
//
// # Recovery
//
// The monitor rebuilds from heartbeats, not from a replay of history. It
// never unloads on a node it has not heard a heartbeat from since it
// started, and an instance that the heartbeat reports with no streams is
// idle from that moment. After a restart an idle instance is therefore
// unloaded at most one timeout (plus one heartbeat interval) late and
// never early, and an instance with open streams is never unloaded on
// stale counts. A JetStream replay could recover the exact idle-since
// times, but it needs a stream the node would have to create and size,
// and the counts it rebuilds would still need the heartbeat to be
// trusted; see docs/idle.md.
//
// # Notes
//
// A node's heartbeat is assumed to count every client event the node
// published before it (the node takes its snapshot and publishes the
// heartbeat in order). If it does not, a count may be wrong until the
// next heartbeat; an unload request that results is refused by the node,
// since it is sent with IfIdle.
package idle
