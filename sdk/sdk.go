//go:build wasip1

package sdk

import (
	"errors"
	"log/slog"
	"time"

	"github.com/astrid-os/astrid-node/abi"
)

// Errno is the type of the codes host calls fail with. The SDK returns
// them as errors unchanged, so errors.Is(err, abi.ErrPending) works.
type Errno = abi.Errno

// IOError is an abi.ErrIO failure with the host's message from last_error.
// errors.Is(err, abi.ErrIO) holds for it.
type IOError struct {
	Op  string // the host function
	Msg string
}

func (e *IOError) Error() string { return e.Op + ": " + e.Msg }
func (e *IOError) Unwrap() error { return abi.ErrIO }

// result turns a host function's i32 result into (value, error). Codes
// other than ErrIO are returned as the abi.Errno itself, which costs no
// allocation: ErrPending is an ordinary answer in a busy loop.
func result(op string, r int32) (int32, error) {
	if r >= 0 {
		return r, nil
	}
	code := abi.Errno(r)
	if code == abi.ErrIO {
		return r, &IOError{Op: op, Msg: LastError()}
	}
	return r, code
}

// Log writes msg to the node's log at level, tagged with the capsule and
// instance. Levels are rounded down to debug, info, warn or error.
func Log(level slog.Level, msg string) {
	l := abi.LevelDebug
	switch {
	case level >= slog.LevelError:
		l = abi.LevelError
	case level >= slog.LevelWarn:
		l = abi.LevelWarn
	case level >= slog.LevelInfo:
		l = abi.LevelInfo
	}
	hostLog(l, stringPtr(msg), uint32(len(msg)))
}

// LastError returns the message of the instance's last failed host call.
func LastError() string {
	buf := make([]byte, 256)
	for {
		n := hostLastError(bytesPtr(buf), uint32(len(buf)))
		if n < 0 {
			return ""
		}
		if int(n) <= len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, n)
	}
}

// InstanceID returns the UUID of this instance.
func InstanceID() string {
	var buf [64]byte
	n := hostInstanceID(bytesPtr(buf[:]), uint32(len(buf)))
	if n < 0 || int(n) > len(buf) {
		return ""
	}
	return string(buf[:n])
}

// Listener is a socket the node bound for this capsule.
type Listener struct{ h int32 }

// Bind returns the listener of the socket called name. The manifest must
// grant "unix:<name>" under [capabilities] net_bind, else the error is
// abi.ErrPermission.
func Bind(name string) (*Listener, error) {
	h, err := result(abi.FuncNetBindUnix, hostNetBindUnix(stringPtr(name), uint32(len(name))))
	if err != nil {
		return nil, err
	}
	return &Listener{h: h}, nil
}

// Handle is the listener's handle as readiness records name it.
func (l *Listener) Handle() int32 { return l.h }

// Accept blocks until an authenticated stream arrives. It fails with
// abi.ErrUnloading when the instance is being unloaded.
func (l *Listener) Accept() (*Stream, error) {
	h, err := result(abi.FuncNetAccept, hostNetAccept(l.h))
	if err != nil {
		return nil, err
	}
	return &Stream{h: h}, nil
}

// PollAccept returns a waiting stream or abi.ErrPending.
func (l *Listener) PollAccept() (*Stream, error) {
	h, err := result(abi.FuncNetPollAccept, hostNetPollAccept(l.h))
	if err != nil {
		return nil, err
	}
	return &Stream{h: h}, nil
}

// Stream is one client connection.
type Stream struct{ h int32 }

// Handle is the stream's handle as readiness records name it.
func (s *Stream) Handle() int32 { return s.h }

// ReadFrame reads the next whole frame into buf, growing it if the frame
// does not fit, and returns the frame. It never blocks: abi.ErrPending
// means no whole frame has arrived, abi.ErrClosed that the stream ended.
func (s *Stream) ReadFrame(buf []byte) ([]byte, error) {
	buf = buf[:cap(buf)]
	for {
		var need uint32
		n := hostNetRead(s.h, bytesPtr(buf), uint32(len(buf)), ptrU32(&need))
		if abi.Errno(n) == abi.ErrBufTooSmall && need <= abi.MaxFrame {
			buf = make([]byte, need)
			continue
		}
		if _, err := result(abi.FuncNetRead, n); err != nil {
			return buf[:0], err
		}
		return buf[:n], nil
	}
}

// Write sends p as one frame. It blocks until the frame is written.
func (s *Stream) Write(p []byte) error {
	_, err := result(abi.FuncNetWrite, hostNetWrite(s.h, bytesPtr(p), uint32(len(p))))
	return err
}

// Close ends the stream; closing it twice is not an error.
func (s *Stream) Close() error {
	_, err := result(abi.FuncNetClose, hostNetClose(s.h))
	return err
}

// Wait blocks until a stream has a frame, a listener has a stream waiting
// or a stream ended, then fills buf with readiness records and returns the
// filled part. A negative timeout waits without limit; on timeout the
// result is empty. While the instance is unloading it fails with
// abi.ErrUnloading. An empty buf gets room for 64 records.
func Wait(timeout time.Duration, buf []abi.Ready) ([]abi.Ready, error) {
	if cap(buf) == 0 {
		buf = make([]abi.Ready, 64)
	}
	buf = buf[:cap(buf)]

	// Round up, so a short positive timeout still waits rather than polls.
	ms := int32(-1)
	if timeout >= 0 {
		ms = int32(min((timeout+time.Millisecond-1)/time.Millisecond, 1<<31-1))
	}
	// abi.Ready is laid out exactly as a readiness record on wasm
	// (little-endian i32 handle, u32 kind), so the host fills buf in place.
	n, err := result(abi.FuncNetWait, hostNetWait(ms, readyPtr(buf), uint32(len(buf))))
	if err != nil {
		return buf[:0], err
	}
	return buf[:n], nil
}

// IsUnloading reports whether err says the instance is being unloaded.
func IsUnloading(err error) bool { return errors.Is(err, abi.ErrUnloading) }
