// Package socketgw is the node's socket gateway. It binds one Unix socket
// per capsule socket name before the capsule starts, checks every client
// (SO_PEERCRED, then the session-token handshake of Astrid v0.5.1), queues
// the authenticated streams for the capsule and hands them to the current
// instance through a Session, which implements runtime.Sockets.
//
// Streams have no goroutines of their own: the instance's goroutine reads
// them when it waits (an epoll set registered with Go's netpoller), so a
// frame reaches a capsule with one wake-up.
//
// The sockets outlive instances: when the idle monitor unloads a capsule,
// its sockets stay bound and new clients wait in the queue until the node
// activates the capsule again (Config.OnPending).
//
// docs/protocol.md describes the wire protocol and the limitations.
package socketgw
