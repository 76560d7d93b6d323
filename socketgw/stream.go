package socketgw

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
)

// Backpressure: a stream is not read further while this many frames, or
// MaxFrame bytes, wait for the instance. The kernel buffer then fills and
// the client's writes block.
const maxQueuedFrames = 16

// spareMax is the largest frame buffer a stream keeps for reuse.
const spareMax = 64 << 10

// stageSize is the read buffer of a stream: small frames are parsed out
// of it, larger payloads are read straight into their own buffer.
const stageSize = 16 << 10

// errAgain is a non-blocking read that found nothing.
var errAgain = errors.New("socketgw: would block")

// stream is one authenticated client connection handed to an instance.
// The instance's own goroutine reads it (see fillLocked): there is no
// reader goroutine.
type stream struct {
	s      *Session
	handle int32
	conn   *net.UnixConn
	fd     int // conn's socket, read raw; valid until ended (guarded by s.mu)

	// Guarded by s.mu.
	ring     [maxQueuedFrames][]byte // whole frames, oldest at head
	head     int
	count    int
	bytes    int    // payload bytes in ring
	inReady  bool   // listed in s.ready
	ended    bool   // the stream is over; conn is closed or closing
	reported bool   // listed in s.ended or its ReadyClosed was reported
	spare    []byte // a frame buffer Read returned, reused for the next frame
	stage    []byte // bytes read and not parsed yet
	stageBuf []byte // backing array of stage, allocated on first read
	inBody   bool   // the header is parsed; body is being filled
	want     int    // body length announced by the header
	body     []byte // the frame being assembled
	behind   bool   // reading stopped on a full queue with data maybe left

	wmu  sync.Mutex // serializes frame writes
	wbuf []byte     // guarded by wmu; header+payload of small frames
}

// fillLocked reads what the client has sent, without blocking, and queues
// whole frames. It returns the disconnect reason when the stream must end
// (peer gone, oversize frame, error); frames queued before stay readable.
// Partial headers and payloads wait in the stream between calls, so no
// byte is lost however the client splits its writes. s.mu is held.
func (st *stream) fillLocked() string {
	max := st.s.g.cfg.MaxFrame
	for !st.ended {
		if st.count == maxQueuedFrames || st.bytes >= max {
			st.behind = true
			return ""
		}
		if !st.inBody && len(st.stage) >= HeaderSize {
			n := binary.BigEndian.Uint32(st.stage)
			if n > uint32(max) {
				st.s.log.Warn("stream closed: oversize frame", "stream", st.handle,
					"size", n, "max", max)
				return events.ReasonFrameTooLarge
			}
			st.stage = st.stage[HeaderSize:]
			st.inBody, st.want = true, int(n)
			st.body, st.spare = st.spare, nil
			if cap(st.body) < st.want {
				st.body = make([]byte, 0, st.want)
			}
			st.body = st.body[:0]
		}
		if st.inBody {
			k := min(len(st.stage), st.want-len(st.body))
			st.body = append(st.body, st.stage[:k]...)
			st.stage = st.stage[k:]
			if len(st.body) == st.want {
				st.pushLocked(st.body)
				st.inBody, st.body = false, nil
				continue
			}
		}

		// More bytes are needed. A large rest of a payload is read in
		// place; anything else goes through the stage.
		var n int
		var err error
		if st.inBody && st.want-len(st.body) >= stageSize {
			n, err = readFD(st.fd, st.body[len(st.body):st.want])
			st.body = st.body[:len(st.body)+n]
		} else {
			if st.stageBuf == nil {
				st.stageBuf = make([]byte, stageSize)
			}
			k := copy(st.stageBuf, st.stage)
			n, err = readFD(st.fd, st.stageBuf[k:])
			st.stage = st.stageBuf[:k+n]
		}
		switch {
		case err == errAgain:
			st.behind = false
			return ""
		case err != nil:
			return readReason(err)
		case n == 0:
			return events.ReasonPeerClosed
		}
	}
	return ""
}

// pushLocked queues a whole frame and marks the stream ready.
func (st *stream) pushLocked(f []byte) {
	s := st.s
	st.ring[(st.head+st.count)%maxQueuedFrames] = f
	st.count++
	st.bytes += len(f)
	if !st.inReady {
		st.inReady = true
		s.ready = append(s.ready, st)
	}
}

// readReason maps a read error to a disconnect reason.
func readReason(err error) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET):
		return events.ReasonPeerClosed
	default:
		return events.ReasonIOError
	}
}

// end ends the stream once: it closes the conn, publishes the disconnect
// event and frees the capsule's stream slot. byGuest drops queued frames
// and forgets the handle at once; otherwise queued frames stay readable
// and the end is reported as ReadyClosed after them. It reports whether
// this call ended the stream.
func (st *stream) end(reason string, byGuest bool) bool {
	s := st.s
	s.mu.Lock()
	if st.ended {
		s.mu.Unlock()
		return false
	}
	st.ended = true
	s.active--
	if s.poll != nil {
		// Out of the epoll set before the fd is closed and maybe reused.
		s.poll.remove(st.fd)
	}
	if byGuest || s.closed {
		st.dropLocked()
		delete(s.streams, st.handle)
		st.reported = true
	} else if st.count == 0 {
		st.reportLocked()
	}
	s.wakeLocked()
	s.mu.Unlock()

	st.conn.Close()
	if ev := s.g.cfg.Events; ev != nil {
		ev.Disconnected(s.c.name, s.instance, st.handle, reason)
	}
	s.log.Debug("stream ended", "stream", st.handle, "reason", reason)
	s.c.release()
	return true
}

// dropLocked discards queued frames. s.mu is held.
func (st *stream) dropLocked() {
	for st.count > 0 {
		st.ring[st.head] = nil
		st.head = (st.head + 1) % maxQueuedFrames
		st.count--
	}
	st.bytes = 0
	if st.inReady {
		st.s.unreadyLocked(st)
	}
}

// reportLocked lists an ended, drained stream for a ReadyClosed record.
func (st *stream) reportLocked() {
	if st.reported {
		return
	}
	st.reported = true
	st.s.ended = append(st.s.ended, st)
}

// write sends p as one frame within the write timeout. Session.Write has
// registered ctx with the session's watch, which pulls the deadline of
// every stream in when ctx ends: host code cannot be preempted any other
// way.
func (st *stream) write(ctx context.Context, p []byte) error {
	st.wmu.Lock()
	defer st.wmu.Unlock()

	st.conn.SetWriteDeadline(time.Now().Add(st.s.g.cfg.WriteTimeout))
	// The watch may have fired before the deadline above replaced its
	// own; it fires only after ctx is done, so this check catches that.
	if ctx.Err() != nil {
		return abi.ErrUnloading
	}
	var err error
	if len(p) <= smallFrame {
		st.wbuf = appendFrame(st.wbuf[:0], p)
		_, err = st.conn.Write(st.wbuf)
		if cap(st.wbuf) > spareMax {
			st.wbuf = nil
		}
	} else {
		err = WriteFrame(st.conn, p)
	}
	if err == nil {
		return nil
	}

	// The instance is unloading: its Session.Close ends the stream with
	// the unload reason, so leave the stream to it.
	if ctx.Err() != nil {
		return abi.ErrUnloading
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		st.s.log.Warn("stream closed: client stopped reading", "stream", st.handle)
		st.end(events.ReasonWriteTimeout, false)
		return abi.ErrTimeout
	case errors.Is(err, net.ErrClosed):
		return abi.ErrClosed
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
		st.end(events.ReasonPeerClosed, false)
		return abi.ErrClosed
	default:
		st.end(events.ReasonIOError, false)
		return fmt.Errorf("writing frame: %w", err)
	}
}
