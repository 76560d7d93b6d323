package socketgw

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
)

// Session is one instance's view of its capsule's sockets. It implements
// runtime.Sockets. Handles are positive, monotonic and never reused;
// listeners and streams share one space.
type Session struct {
	g        *Gateway
	c        *capsule
	instance string
	log      *slog.Logger

	mu        sync.Mutex
	closed    bool              // guarded by mu
	next      int32             // guarded by mu; last handle issued
	listeners []listener        // guarded by mu
	streams   map[int32]*stream // guarded by mu; open, or ended and unreported
	ready     []*stream         // guarded by mu; streams with a whole frame
	ended     []*stream         // guarded by mu; ReadyClosed not yet reported
	rr        int               // guarded by mu; round-robin start in ready
	watchDone <-chan struct{}   // guarded by mu; ctx whose end interrupts writes
	watchStop func() bool       // guarded by mu; unregisters that watch
	active    int               // guarded by mu; open streams
	wakeCh    chan struct{}     // guarded by mu; closed to wake blocked callers
}

type listener struct {
	handle int32
	sock   *socket
}

func newSession(g *Gateway, c *capsule, instance string) *Session {
	return &Session{
		g:        g,
		c:        c,
		instance: instance,
		log:      g.cfg.Logger.With("capsule", c.name, "instance", instance),
		streams:  map[int32]*stream{},
	}
}

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

// issueLocked returns the next handle.
func (s *Session) issueLocked() (int32, error) {
	if s.next == math.MaxInt32 {
		return 0, abi.ErrIO // two billion handles in one instance
	}
	s.next++
	return s.next, nil
}

// Bind returns the listener handle of the socket name bound for the
// capsule, the same handle each time for one name.
func (s *Session) Bind(name string) (int32, error) {
	if !ValidName(name) {
		return 0, abi.ErrInvalid
	}
	var sock *socket
	s.c.mu.Lock()
	for _, so := range s.c.sockets {
		if so.name == name {
			sock = so
		}
	}
	s.c.mu.Unlock()
	if sock == nil {
		return 0, abi.ErrNotFound
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, abi.ErrUnloading
	}
	for _, l := range s.listeners {
		if l.sock == sock {
			return l.handle, nil
		}
	}
	h, err := s.issueLocked()
	if err != nil {
		return 0, err
	}
	s.listeners = append(s.listeners, listener{handle: h, sock: sock})
	// Clients may have queued while no instance was attached.
	s.wakeLocked()
	return h, nil
}

func (s *Session) listenerLocked(h int32) (*socket, error) {
	for _, l := range s.listeners {
		if l.handle == h {
			return l.sock, nil
		}
	}
	return nil, abi.ErrBadHandle
}

// Accept blocks until an authenticated stream can be accepted on
// listener (one is queued and the capsule is under its stream cap).
func (s *Session) Accept(ctx context.Context, listener int32) (int32, error) {
	for {
		if ctx.Err() != nil {
			return 0, abi.ErrUnloading
		}
		s.mu.Lock()
		ch := s.waitChLocked()
		s.mu.Unlock()

		h, err := s.PollAccept(listener)
		if err != abi.ErrPending {
			return h, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, abi.ErrUnloading
		}
	}
}

// PollAccept accepts a queued stream or returns abi.ErrPending.
func (s *Session) PollAccept(listener int32) (int32, error) {
	s.mu.Lock()
	sock, err := s.listenerLocked(listener)
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return 0, abi.ErrUnloading
	}
	if err != nil {
		return 0, err
	}

	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, abi.ErrUnloading
	}
	if len(sock.queue) == 0 || int(c.active.Load()) >= s.g.cfg.MaxStreams {
		return 0, abi.ErrPending
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, abi.ErrUnloading
	}
	h, err := s.issueLocked()
	if err != nil {
		return 0, err
	}
	p := sock.queue[0]
	sock.queue[0] = nil
	sock.queue = sock.queue[1:]
	sock.queued.Store(int32(len(sock.queue)))
	c.active.Add(1)

	st := &stream{s: s, handle: h, conn: p.conn}
	st.room.L = &s.mu
	s.streams[h] = st
	s.active++

	// Published under the locks and before the reader starts, so this
	// stream's connected event always precedes its disconnect event.
	if ev := s.g.cfg.Events; ev != nil {
		ev.Connected(c.name, s.instance, h)
	}
	s.log.Debug("stream accepted", "stream", h, "socket", sock.name,
		"peer_pid", p.pid)
	// The gateway cannot be past its wg.Wait: c.closed is false under c.mu.
	s.g.wg.Add(1)
	go st.readLoop()
	return h, nil
}

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

// Read copies the next whole frame of stream into buf. It never blocks.
func (s *Session) Read(stream int32, buf []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.streamLocked(stream)
	if err != nil {
		return 0, err
	}
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
	st.room.Signal()

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
// writes. A runtime passes the same ctx for an instance's whole life, so
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
// wakes writes blocked on a client that does not read.
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

// Active is the number of the instance's open streams.
func (s *Session) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// Close ends every open stream of the instance with reason and detaches
// the instance. The sockets stay bound and queued streams stay queued for
// the next instance. It returns how many streams it ended.
func (s *Session) Close(reason string) int {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0
	}
	s.closed = true
	if s.watchStop != nil {
		s.watchStop()
		s.watchStop, s.watchDone = nil, nil
	}
	open := make([]*stream, 0, s.active)
	for _, st := range s.streams {
		if !st.ended {
			open = append(open, st)
		}
	}
	s.wakeLocked()
	s.mu.Unlock()

	n := 0
	for _, st := range open {
		if st.end(reason, false) {
			n++
		}
	}

	c := s.c
	c.mu.Lock()
	delete(c.sessions, s)
	if c.cur == s {
		c.cur = nil
		if c.waitingLocked() > 0 {
			c.activateLocked()
		}
	}
	c.mu.Unlock()
	return n
}
