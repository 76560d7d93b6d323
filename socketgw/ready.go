package socketgw

import (
	"context"
	"time"

	"github.com/astrid-os/astrid-node/abi"
)

// wakeLocked wakes every blocked Wait and Accept. s.mu is held.
func (s *Session) wakeLocked() {
	if s.wakeCh != nil {
		close(s.wakeCh)
		s.wakeCh = nil
	}
	if s.polling > 0 {
		s.poll.wake()
	}
}

func (s *Session) wake() {
	s.mu.Lock()
	s.wakeLocked()
	s.mu.Unlock()
}

// waitChLocked returns the channel the next wake closes. Callers take it
// before they look at the state, so a change after the look still wakes
// them.
func (s *Session) waitChLocked() chan struct{} {
	if s.wakeCh == nil {
		s.wakeCh = make(chan struct{})
	}
	return s.wakeCh
}

// Wait blocks until something is ready, timeout passes (< 0: never) or
// ctx ends, and fills out with readiness records. The caller's goroutine
// does the reading: it sleeps in epoll_wait on the session's streams and
// parses what arrives, so a frame costs the capsule one wake-up.
func (s *Session) Wait(ctx context.Context, timeout time.Duration, out []abi.Ready) (int, error) {
	if len(out) == 0 {
		return 0, abi.ErrInvalid
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchLocked(ctx)
	var tags []int32
	for {
		if ctx.Err() != nil || s.closed {
			s.releasePollLocked()
			return 0, abi.ErrUnloading
		}
		s.readUnreadLocked()
		if n := s.collectLocked(out); n > 0 || timeout == 0 {
			return n, nil
		}
		ms := -1
		if timeout > 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return 0, nil
			}
			ms = int((left + time.Millisecond - 1) / time.Millisecond)
		}

		if s.poll == nil {
			// No stream yet: only a wake (a client queued, the
			// instance unloading) or the timeout can end the wait.
			if !s.waitChanLocked(ctx, ms) {
				return 0, nil
			}
			continue
		}
		s.polling++
		p := s.poll
		s.mu.Unlock()
		var err error
		tags, err = p.wait(ms, tags[:0])
		s.mu.Lock()
		s.polling--
		if err != nil {
			return 0, err
		}
		for _, h := range tags {
			if st := s.streams[h]; st != nil && !st.ended {
				s.unread = append(s.unread, st)
			}
		}
	}
}

// readUnreadLocked reads the streams that may hold unread bytes and ends
// those that are over. Ending takes s.mu, so it drops the lock for that.
func (s *Session) readUnreadLocked() {
	for len(s.unread) > 0 {
		st := s.unread[len(s.unread)-1]
		s.unread[len(s.unread)-1] = nil
		s.unread = s.unread[:len(s.unread)-1]
		if st.ended {
			continue
		}
		if reason := st.fillLocked(); reason != "" {
			s.mu.Unlock()
			st.end(reason, false)
			s.mu.Lock()
		}
	}
}

// waitChanLocked waits for a wake, ctx or ms (< 0: none) with s.mu
// released. It reports false on timeout.
func (s *Session) waitChanLocked(ctx context.Context, ms int) bool {
	ch := s.waitChLocked()
	s.mu.Unlock()
	defer s.mu.Lock()
	var timer <-chan time.Time
	if ms >= 0 {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ch:
	case <-ctx.Done():
	case <-timer:
		return false
	}
	return true
}

// collectLocked fills out with readiness records: streams with frames
// (level-triggered, round robin so a busy stream cannot hide the others),
// listeners with an acceptable stream, then ended streams, each reported
// once. Its cost depends on the ready streams, not on the idle ones.
func (s *Session) collectLocked(out []abi.Ready) int {
	n := 0
	if k := len(s.ready); k > 0 {
		start := s.rr % k
		for i := 0; i < k && n < len(out); i++ {
			st := s.ready[(start+i)%k]
			out[n] = abi.Ready{Handle: st.handle, Kind: abi.ReadyFrame}
			n++
		}
		s.rr = start + 1
	}

	if n < len(out) && int(s.c.active.Load()) < s.g.cfg.MaxStreams {
		for _, l := range s.listeners {
			if n < len(out) && l.sock.queued.Load() > 0 {
				out[n] = abi.Ready{Handle: l.handle, Kind: abi.ReadyAccept}
				n++
			}
		}
	}

	reported := 0
	for _, st := range s.ended {
		if n == len(out) {
			break
		}
		out[n] = abi.Ready{Handle: st.handle, Kind: abi.ReadyClosed}
		n++
		reported++
		// Reported once: from here on the handle reads as ErrClosed.
		delete(s.streams, st.handle)
	}
	if reported > 0 {
		clear(s.ended[:reported])
		s.ended = s.ended[reported:]
	}
	return n
}
