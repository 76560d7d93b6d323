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
// ctx ends, and fills out with readiness records.
func (s *Session) Wait(ctx context.Context, timeout time.Duration, out []abi.Ready) (int, error) {
	if len(out) == 0 {
		return 0, abi.ErrInvalid
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}

	for {
		if ctx.Err() != nil {
			return 0, abi.ErrUnloading
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return 0, abi.ErrUnloading
		}
		ch := s.waitChLocked()
		n := s.collectLocked(out)
		s.mu.Unlock()
		if n > 0 || timeout == 0 {
			return n, nil
		}

		select {
		case <-ch:
		case <-timer:
			return 0, nil
		case <-ctx.Done():
			return 0, abi.ErrUnloading
		}
	}
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
