// Package abi holds the contract between the node and its capsules: the
// names of the host functions in the "astrid" import module and the result
// codes they return. The host (runtime, socketgw) and the guest SDK (sdk)
// both import it, so the two sides cannot drift apart.
//
// Every host function takes and returns i32 values (a few return i64). A
// result >= 0 is success; a negative result is one of the Errno codes below.
// Ordinary failures are codes, never traps: a guest can always act on them.
// docs/abi.md documents each function.
package abi

import "fmt"

// Module is the import module name of every host function.
const Module = "astrid"

// Host function names.
const (
	FuncLog       = "log"        // (level, msg_ptr, msg_len) -> errno
	FuncLastError = "last_error" // (buf_ptr, buf_cap) -> full message length
	FuncInstance  = "instance_id"

	FuncNetBindUnix   = "net_bind_unix"    // (name_ptr, name_len) -> listener handle
	FuncNetAccept     = "net_accept"       // (listener) -> stream handle, blocking
	FuncNetPollAccept = "net_poll_accept"  // (listener) -> stream handle or Pending
	FuncNetRead       = "net_read"         // (stream, buf_ptr, buf_cap, need_ptr) -> frame length
	FuncNetWrite      = "net_write"        // (stream, ptr, len) -> errno
	FuncNetClose      = "net_close_stream" // (stream) -> errno, idempotent
	FuncNetWait       = "net_wait"         // (timeout_ms, ev_ptr, ev_cap) -> event count
)

// Errno is a negative result code of a host function.
type Errno int32

// Result codes. Values are part of the wire contract with compiled
// capsules: never renumber, only append.
const (
	OK             Errno = 0
	ErrBadPointer  Errno = -1  // a pointer/length pair is outside guest memory
	ErrBadHandle   Errno = -2  // no such listener or stream for this instance
	ErrPermission  Errno = -3  // the capsule lacks the capability
	ErrUnloading   Errno = -4  // the instance is being unloaded; return promptly
	ErrClosed      Errno = -5  // the stream has ended; no more frames
	ErrPending     Errno = -6  // nothing ready yet (non-blocking calls)
	ErrTimeout     Errno = -7  // a deadline passed (write to a client that stops reading)
	ErrTooLarge    Errno = -8  // a frame exceeds MaxFrame
	ErrBufTooSmall Errno = -9  // the frame is larger than the buffer; need_ptr holds its size
	ErrInvalid     Errno = -10 // a malformed argument (bad level, bad name, bad UTF-8)
	ErrIO          Errno = -11 // any other I/O failure; last_error has the message
	ErrNotFound    Errno = -12 // no socket of that name is bound for this capsule
)

var names = map[Errno]string{
	OK:             "ok",
	ErrBadPointer:  "bad pointer",
	ErrBadHandle:   "bad handle",
	ErrPermission:  "permission denied",
	ErrUnloading:   "unloading",
	ErrClosed:      "stream closed",
	ErrPending:     "pending",
	ErrTimeout:     "timeout",
	ErrTooLarge:    "frame too large",
	ErrBufTooSmall: "buffer too small",
	ErrInvalid:     "invalid argument",
	ErrIO:          "i/o error",
	ErrNotFound:    "not found",
}

func (e Errno) Error() string {
	if s, ok := names[e]; ok {
		return s
	}
	return fmt.Sprintf("errno %d", int32(e))
}

// MaxFrame is the largest frame, in bytes, in either direction.
const MaxFrame = 10 << 20

// Log levels accepted by FuncLog; they match slog's numeric levels.
const (
	LevelDebug int32 = -4
	LevelInfo  int32 = 0
	LevelWarn  int32 = 4
	LevelError int32 = 8
)

// Readiness record kinds written by FuncNetWait. Each record is 8 bytes:
// u32 little-endian handle, then u32 little-endian kind.
const (
	ReadyFrame  uint32 = 1 // a stream has at least one whole frame to read
	ReadyAccept uint32 = 2 // a listener has an authenticated stream waiting
	ReadyClosed uint32 = 3 // a stream ended (peer gone, oversize frame, error)
)

// ReadyRecordSize is the byte size of one FuncNetWait record.
const ReadyRecordSize = 8

// Ready is one readiness record.
type Ready struct {
	Handle int32
	Kind   uint32
}
