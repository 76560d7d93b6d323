package socketgw

import (
	"net"
	"sync"
	"sync/atomic"
)

// capsule is the gateway's state for one capsule: its sockets, the
// streams queued on them and the instances attached to it.
type capsule struct {
	g    *Gateway
	name string

	// active counts the capsule's open streams over all its instances.
	// It changes under mu and is read without it for readiness checks.
	active atomic.Int32

	mu          sync.Mutex
	closed      bool                  // guarded by mu; the gateway closed
	sockets     []*socket             // guarded by mu
	cur         *Session              // guarded by mu; instance that queued streams wake
	sessions    map[*Session]struct{} // guarded by mu; attached, not closed
	hookRunning bool                  // guarded by mu; OnPending is running
	hookAgain   bool                  // guarded by mu; streams queued during the call
}

// socket is one bound Unix socket of a capsule.
type socket struct {
	c    *capsule
	name string
	path string
	ln   *net.UnixListener

	queue  []*pending   // guarded by c.mu; authenticated, not yet accepted
	queued atomic.Int32 // len(queue), readable without c.mu
}

// pending is an authenticated client waiting to be accepted.
type pending struct {
	conn  *net.UnixConn
	uid   int
	pid   int
	early []byte // bytes the client sent behind its handshake request
}

func (c *capsule) waitingLocked() int {
	n := 0
	for _, s := range c.sockets {
		n += len(s.queue)
	}
	return n
}

// enqueue queues an authenticated client on s and wakes the instance or,
// with none attached, asks for an activation.
func (c *capsule) enqueue(s *socket, p *pending) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		p.conn.Close()
		return
	}
	s.queue = append(s.queue, p)
	s.queued.Store(int32(len(s.queue)))
	cur := c.cur
	if cur == nil {
		c.activateLocked()
	}
	c.mu.Unlock()

	if cur != nil {
		cur.wake()
	}
}

// release accounts for a stream that ended and wakes the instance if a
// queued stream can now be accepted.
func (c *capsule) release() {
	c.mu.Lock()
	c.active.Add(-1)
	cur := c.cur
	waiting := c.waitingLocked() > 0
	c.mu.Unlock()

	if cur != nil && waiting {
		cur.wake()
	}
}

// activateLocked runs the OnPending hook unless one is running; in that
// case the running one repeats once more if streams still wait then.
func (c *capsule) activateLocked() {
	hook := c.g.cfg.OnPending
	if hook == nil || c.closed {
		return
	}
	if c.hookRunning {
		c.hookAgain = true
		return
	}
	c.hookRunning = true

	go func() {
		for {
			hook(c.name)

			c.mu.Lock()
			again := c.hookAgain && c.cur == nil && !c.closed && c.waitingLocked() > 0
			c.hookAgain = false
			if !again {
				c.hookRunning = false
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
		}
	}()
}
