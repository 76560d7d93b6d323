package runtime

import (
	"context"
	"time"

	"github.com/astrid-os/astrid-node/abi"
)

// Sockets is an instance's view of the sockets the node bound for its
// capsule. The socket gateway (socketgw) implements it; the runtime's net_*
// host functions call it after checking the capsule's net_bind capability.
// Handles are per instance, positive, monotonic and never reused.
//
// Errors are abi.Errno values where the guest can act on them (ErrPending,
// ErrClosed, ErrBadHandle, ErrUnloading, ErrTimeout, ...). Any other error
// becomes abi.ErrIO and its text is kept for last_error.
//
// Blocking methods must return promptly with abi.ErrUnloading once ctx is
// cancelled: wazero cannot preempt host code.
type Sockets interface {
	// Bind returns the listener handle for the pre-bound socket name, or
	// abi.ErrNotFound.
	Bind(name string) (int32, error)
	// Accept blocks until an authenticated stream is ready on listener.
	Accept(ctx context.Context, listener int32) (int32, error)
	// PollAccept returns a ready stream or abi.ErrPending.
	PollAccept(listener int32) (int32, error)
	// Read copies the next whole frame into buf and returns its length.
	// It never blocks: abi.ErrPending if no whole frame has arrived,
	// abi.ErrClosed once the stream has ended. If the frame is larger than
	// buf it returns (frame length, abi.ErrBufTooSmall) and keeps the frame.
	Read(stream int32, buf []byte) (int, error)
	// Write sends p as one frame. It blocks until written, the write
	// timeout passes (abi.ErrTimeout, and the stream ends), or ctx ends.
	Write(ctx context.Context, stream int32, p []byte) error
	// CloseStream ends a stream. Closing a closed stream is not an error;
	// a handle that was never issued is abi.ErrBadHandle.
	CloseStream(stream int32) error
	// Wait blocks until a stream has a frame, a listener has a stream
	// ready, or a stream ended; or until timeout (< 0 means no timeout)
	// or ctx ends. It fills out and returns how many records it wrote
	// (0 on timeout).
	Wait(ctx context.Context, timeout time.Duration, out []abi.Ready) (int, error)
	// Active is the number of the instance's streams that are open.
	Active() int
	// Close ends every open stream of the instance with the disconnect
	// reason given (events.Reason*) and returns how many it ended. The
	// sockets stay bound for the next instance.
	Close(reason string) int
}

// SocketsFunc attaches a new instance to its capsule's sockets. The node
// wires it to the gateway; it is nil when the node runs without one, and
// every net_* call then fails with abi.ErrNotFound.
type SocketsFunc func(capsule, instance string) Sockets
