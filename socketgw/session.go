package socketgw

import (
	"context"
	"log/slog"
	"math"
	"sync"

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
	watchDone <-chan struct{}   // guarded by mu; ctx whose end interrupts writes and Wait
	watchStop func() bool       // guarded by mu; unregisters that watch
	active    int               // guarded by mu; open streams
	wakeCh    chan struct{}     // guarded by mu; closed to wake blocked callers
	poll      *poller           // guarded by mu; nil until the first stream
	polling   int               // guarded by mu; Waits inside epoll_wait
	unread    []*stream         // guarded by mu; streams to read before the next wait
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

	st := &stream{s: s, handle: h, conn: p.conn, fd: -1, stage: p.early}
	if err := st.attachLocked(); err != nil {
		// Without its fd in the poller the stream could never be read:
		// end it now rather than leave a client hanging.
		s.log.Warn("stream not served", "stream", h, "err", err)
	}
	s.streams[h] = st
	s.active++

	// Published under the locks and before anything reads the stream, so
	// this stream's connected event always precedes its disconnect event.
	if ev := s.g.cfg.Events; ev != nil {
		ev.Connected(c.name, s.instance, h)
	}
	s.log.Debug("stream accepted", "stream", h, "socket", sock.name,
		"peer_pid", p.pid)
	// Bytes may have arrived before the fd joined the poller: read them
	// at the next Wait or Read.
	s.unread = append(s.unread, st)
	if st.fd < 0 {
		go st.end(events.ReasonIOError, false)
	}
	return h, nil
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
	s.mu.Lock()
	s.releasePollLocked()
	s.mu.Unlock()

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

// attachLocked takes the stream's raw fd and adds it to the session's
// poller, creating the poller for the first stream.
func (st *stream) attachLocked() error {
	s := st.s
	raw, err := st.conn.SyscallConn()
	if err != nil {
		return err
	}
	if err := raw.Control(func(fd uintptr) { st.fd = int(fd) }); err != nil {
		return err
	}
	if s.poll == nil {
		if s.poll, err = newPoller(); err != nil {
			st.fd = -1
			return err
		}
	}
	if err := s.poll.add(st.fd, st.handle); err != nil {
		st.fd = -1
		return err
	}
	return nil
}

// releasePollLocked closes the poller of a closed session once no Wait is
// inside it.
func (s *Session) releasePollLocked() {
	if s.closed && s.polling == 0 && s.poll != nil {
		s.poll.close()
		s.poll = nil
	}
}
