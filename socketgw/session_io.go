package socketgw

import (
	"context"
	"slices"
	"time"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
)

// streamLocked resolves a stream handle. A handle issued earlier whose
// stream is gone reads as abi.ErrClosed; a listener handle or one never
// issued is abi.ErrBadHandle.
func (s *Session) streamLocked(h int32) (*stream, error) {
	if st := s.streams[h]; st != nil {
		return st, nil
	}
	if h <= 0 || h > s.next {
		return nil, abi.ErrBadHandle
	}
	if _, err := s.listenerLocked(h); err == nil {
		return nil, abi.ErrBadHandle
	}
	return nil, abi.ErrClosed
}

// Read copies the next whole frame of stream into buf. It never blocks:
// with no whole frame queued it reads what the socket holds, and then
// reports abi.ErrPending.
func (s *Session) Read(stream int32, buf []byte) (int, error) {
	s.mu.Lock()
	st, err := s.streamLocked(stream)
	if err != nil {
		s.mu.Unlock()
		return 0, err
	}
	if st.count == 0 && !st.ended {
		if reason := st.fillLocked(); reason != "" {
			s.mu.Unlock()
			st.end(reason, false)
			s.mu.Lock()
		}
	}
	n, err := st.takeLocked(buf)
	s.mu.Unlock()
	return n, err
}

// takeLocked copies the oldest queued frame into buf. s.mu is held.
func (st *stream) takeLocked(buf []byte) (int, error) {
	s := st.s
	if st.count == 0 {
		if st.ended {
			return 0, abi.ErrClosed
		}
		return 0, abi.ErrPending
	}

	f := st.ring[st.head]
	if len(f) > len(buf) {
		return len(f), abi.ErrBufTooSmall
	}
	n := copy(buf, f)
	st.ring[st.head] = nil
	st.head = (st.head + 1) % maxQueuedFrames
	st.count--
	st.bytes -= n
	if cap(f) <= spareMax {
		st.spare = f[:0]
	}
	// Reading stopped on a full queue: there is room again, so the next
	// Wait reads on (the edge that announced the data will not come
	// again).
	if st.behind && !st.ended {
		st.behind = false
		s.unread = append(s.unread, st)
	}

	if st.count == 0 {
		s.unreadyLocked(st)
		if st.ended {
			st.reportLocked()
		}
	}
	return n, nil
}

// unreadyLocked takes st off the ready list.
func (s *Session) unreadyLocked(st *stream) {
	st.inReady = false
	for i, r := range s.ready {
		if r == st {
			last := len(s.ready) - 1
			s.ready[i] = s.ready[last]
			s.ready[last] = nil
			s.ready = s.ready[:last]
			return
		}
	}
}

// Write sends p as one frame to the client of stream.
func (s *Session) Write(ctx context.Context, stream int32, p []byte) error {
	if len(p) > abi.MaxFrame {
		return abi.ErrTooLarge
	}
	if ctx.Err() != nil {
		return abi.ErrUnloading
	}
	s.mu.Lock()
	st, err := s.streamLocked(stream)
	if err == nil && st.ended {
		err = abi.ErrClosed
	}
	if err == nil && ctx.Done() != nil {
		s.watchLocked(ctx)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return st.write(ctx, p)
}

// watchLocked makes the end of ctx interrupt the session's blocked
// writes and wake its Wait. A runtime passes the same ctx for an instance's whole life, so
// this registers once rather than once per frame.
func (s *Session) watchLocked(ctx context.Context) {
	done := ctx.Done()
	if s.watchDone == done {
		return
	}
	if s.watchStop != nil {
		s.watchStop()
	}
	s.watchDone = done
	s.watchStop = context.AfterFunc(ctx, func() { s.interruptWrites(done) })
}

// interruptWrites pulls in the write deadline of every stream, which
// wakes writes blocked on a client that does not read, and wakes Wait.
func (s *Session) interruptWrites(done <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A watch replaced by a newer ctx must not disturb that ctx's writes;
	// the replacement happened under s.mu, before any of those writes.
	if s.watchDone != done {
		return
	}
	for _, st := range s.streams {
		st.conn.SetWriteDeadline(time.Unix(1, 0))
	}
	// And a Wait asleep on the streams returns ErrUnloading.
	s.wakeLocked()
}

// CloseStream ends stream with reason stream_closed. Closing an ended
// stream is not an error.
func (s *Session) CloseStream(stream int32) error {
	s.mu.Lock()
	st, err := s.streamLocked(stream)
	if err == nil && st.ended {
		// Ended by the client or an error: the guest is done with it,
		// and needs no ReadyClosed for it any more.
		st.dropLocked()
		delete(s.streams, stream)
		if i := slices.Index(s.ended, st); i >= 0 {
			s.ended = slices.Delete(s.ended, i, i+1)
		}
	}
	s.mu.Unlock()
	if err == abi.ErrClosed {
		return nil
	}
	if err != nil {
		return err
	}
	st.end(events.ReasonStreamClosed, true)
	return nil
}
