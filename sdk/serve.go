//go:build wasip1

package sdk

import (
	"errors"
	"time"

	"github.com/astrid-os/astrid-node/abi"
)

// FrameFunc handles one frame of a stream. frame is valid only during the
// call. An error closes the stream.
type FrameFunc func(s *Stream, frame []byte) error

// Serve runs a readiness loop over the listeners: it accepts every new
// stream, hands each whole frame to fn and closes streams that ended or
// whose fn failed. It blocks in net_wait while nothing is ready, so idle
// streams cost nothing. It returns nil once the instance is unloading, and
// any other host failure as an error.
func Serve(fn FrameFunc, listeners ...*Listener) error {
	lis := make(map[int32]*Listener, len(listeners))
	for _, l := range listeners {
		lis[l.h] = l
	}
	streams := map[int32]*Stream{}
	ready := make([]abi.Ready, 64)
	buf := make([]byte, 4096)

	for {
		recs, err := Wait(-1, ready)
		if errors.Is(err, abi.ErrUnloading) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, r := range recs {
			switch r.Kind {
			case abi.ReadyAccept:
				if l := lis[r.Handle]; l != nil {
					if err := acceptAll(l, streams); err != nil {
						return unloadIsNil(err)
					}
				}
			case abi.ReadyFrame, abi.ReadyClosed:
				s := streams[r.Handle]
				if s == nil {
					continue
				}
				var done bool
				buf, done, err = drain(s, buf, fn)
				if err != nil {
					return unloadIsNil(err)
				}
				if done {
					s.Close()
					delete(streams, r.Handle)
				}
			}
		}
	}
}

// acceptAll takes every stream waiting on l.
func acceptAll(l *Listener, streams map[int32]*Stream) error {
	for {
		s, err := l.PollAccept()
		if errors.Is(err, abi.ErrPending) {
			return nil
		}
		if err != nil {
			return err
		}
		streams[s.h] = s
	}
}

// drain hands every whole frame of s to fn. done says the stream ended (or
// fn failed) and must be closed. Only ErrUnloading is returned as an
// error: every other failure concerns this stream alone.
func drain(s *Stream, buf []byte, fn FrameFunc) ([]byte, bool, error) {
	for {
		frame, err := s.ReadFrame(buf)
		if cap(frame) > cap(buf) {
			buf = frame[:cap(frame)]
		}
		switch {
		case errors.Is(err, abi.ErrPending):
			return buf, false, nil
		case errors.Is(err, abi.ErrUnloading):
			return buf, true, err
		case err != nil:
			return buf, true, nil
		}
		if err := fn(s, frame); err != nil {
			if errors.Is(err, abi.ErrUnloading) {
				return buf, true, err
			}
			return buf, true, nil
		}
	}
}

func unloadIsNil(err error) error {
	if errors.Is(err, abi.ErrUnloading) {
		return nil
	}
	return err
}

// WaitUnload parks a capsule that serves no sockets until the instance is
// being unloaded. It blocks in net_wait, so it does not spin; records that
// arrive meanwhile (a capsule that does hold sockets) are ignored.
func WaitUnload() {
	var one [1]abi.Ready
	for {
		if _, err := Wait(-1, one[:]); err != nil && errors.Is(err, abi.ErrUnloading) {
			return
		} else if err != nil {
			// Another failure would repeat at once; back off instead of
			// spinning until the unload.
			time.Sleep(100 * time.Millisecond)
		}
	}
}
