package socketgw

import (
	"bufio"
	"context"
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

// Backpressure: the reader goroutine stops reading from the client while
// this many frames, or MaxFrame bytes, wait for the instance. The kernel
// buffer then fills and the client's writes block.
const maxQueuedFrames = 16

// spareMax is the largest frame buffer a stream keeps for reuse.
const spareMax = 64 << 10

// stream is one authenticated client connection handed to an instance.
type stream struct {
	s      *Session
	handle int32
	conn   *net.UnixConn

	// Guarded by s.mu.
	ring     [maxQueuedFrames][]byte // whole frames, oldest at head
	head     int
	count    int
	bytes    int    // payload bytes in ring
	inReady  bool   // listed in s.ready
	ended    bool   // the stream is over; conn is closed or closing
	reported bool   // listed in s.ended or its ReadyClosed was reported
	spare    []byte // a frame buffer Read returned, for the reader to reuse
	room     sync.Cond

	wmu  sync.Mutex // serializes frame writes
	wbuf []byte     // guarded by wmu; header+payload of small frames
}

// readLoop moves whole frames from the client into the ring until the
// stream ends. The conn is blocking with no deadline, so a slow client
// never splits a read: io.ReadFull resumes where it stopped.
func (st *stream) readLoop() {
	defer st.s.g.wg.Done()
	max := st.s.g.cfg.MaxFrame
	br := bufio.NewReaderSize(st.conn, 4096)
	hdr := new([HeaderSize]byte)

	for {
		buf, ok := st.waitRoom()
		if !ok {
			return
		}
		n, err := readHeaderInto(br, max, hdr)
		if errors.Is(err, ErrFrameTooLarge) {
			st.s.log.Warn("stream closed: oversize frame", "stream", st.handle, "err", err)
			st.end(events.ReasonFrameTooLarge, false)
			return
		}
		if err == nil {
			buf, err = readPayload(br, n, buf)
		}
		if err != nil {
			st.end(readReason(err), false)
			return
		}
		st.push(buf)
	}
}

// waitRoom blocks while the ring is full and hands out the spare buffer.
// It reports false once the stream has ended.
func (st *stream) waitRoom() ([]byte, bool) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for !st.ended && (st.count == maxQueuedFrames || st.bytes >= s.g.cfg.MaxFrame) {
		st.room.Wait()
	}
	buf := st.spare
	st.spare = nil
	return buf, !st.ended
}

// push queues a whole frame and wakes the instance.
func (st *stream) push(f []byte) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.ended {
		return
	}
	st.ring[(st.head+st.count)%maxQueuedFrames] = f
	st.count++
	st.bytes += len(f)
	if !st.inReady {
		st.inReady = true
		s.ready = append(s.ready, st)
	}
	s.wakeLocked()
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
	st.room.Broadcast()
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
