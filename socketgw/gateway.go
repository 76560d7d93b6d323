package socketgw

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/astrid-os/astrid-node/events"
)

// Gateway owns the node's sockets, its session token and every stream.
type Gateway struct {
	cfg       Config
	token     Token
	tokenPath string

	// socketMode is the mode of each socket file. Tests relax it so a
	// process of another uid can reach the SO_PEERCRED check.
	socketMode os.FileMode

	mu       sync.Mutex
	closed   bool                  // guarded by mu
	capsules map[string]*capsule   // guarded by mu
	sockets  map[string]*socket    // guarded by mu; by socket name
	inflight map[net.Conn]struct{} // guarded by mu; handshakes running
	wg       sync.WaitGroup        // every goroutine the gateway starts
}

// New prepares the run dir and writes a fresh session token.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := prepareRunDir(cfg.RunDir); err != nil {
		return nil, err
	}

	g := &Gateway{
		cfg:        cfg,
		tokenPath:  filepath.Join(cfg.RunDir, TokenFile),
		socketMode: 0o600,
		capsules:   map[string]*capsule{},
		sockets:    map[string]*socket{},
		inflight:   map[net.Conn]struct{}{},
	}
	var err error
	if g.token, err = newToken(); err != nil {
		return nil, err
	}
	if err := writeTokenFile(g.tokenPath, &g.token); err != nil {
		return nil, err
	}
	return g, nil
}

// prepareRunDir creates dir 0700 or makes an existing one 0700. It
// refuses a symlink, a non-directory and a directory of another owner:
// the sockets and token inside must be reachable by this uid only.
func prepareRunDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("creating run dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating run dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("checking run dir: %w", err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("run dir %s is a symlink; refusing it", dir)
	case !fi.IsDir():
		return fmt.Errorf("run dir %s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("run dir %s is owned by uid %d, not %d", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("restricting run dir: %w", err)
		}
	}
	return nil
}

// TokenPath is the path of the session token file.
func (g *Gateway) TokenPath() string { return g.tokenPath }

// capsuleLocked returns the state of capsule, creating it. g.mu is held.
func (g *Gateway) capsuleLocked(name string) *capsule {
	c := g.capsules[name]
	if c == nil {
		c = &capsule{g: g, name: name, sessions: map[*Session]struct{}{}}
		g.capsules[name] = c
	}
	return c
}

func (g *Gateway) lookup(name string) *capsule {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.capsules[name]
}

// Waiting is the number of authenticated streams queued for capsule and
// not yet accepted by an instance.
func (g *Gateway) Waiting(capsule string) int {
	c := g.lookup(capsule)
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitingLocked()
}

// Active is the number of open streams of capsule, over all instances.
func (g *Gateway) Active(capsule string) int {
	c := g.lookup(capsule)
	if c == nil {
		return 0
	}
	return int(c.active.Load())
}

// Attach gives a new instance of capsule its view of the capsule's
// sockets. The instance becomes the one that queued streams wake. After
// Close the returned Session fails every call with abi.ErrUnloading.
func (g *Gateway) Attach(capsule, instance string) *Session {
	g.mu.Lock()
	c := g.capsuleLocked(capsule)
	gone := g.closed
	g.mu.Unlock()

	s := newSession(g, c, instance)
	c.mu.Lock()
	if c.closed || gone {
		s.closed = true
	} else {
		c.cur = s
		c.sessions[s] = struct{}{}
	}
	c.mu.Unlock()
	return s
}

// Close shuts the gateway down: it closes the listeners, drops clients
// still in the handshake or the queue, ends every stream with reason
// node_shutdown, waits for its goroutines and removes the socket files and
// the token file. Closing twice is a no-op.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	capsules := make([]*capsule, 0, len(g.capsules))
	for _, c := range g.capsules {
		capsules = append(capsules, c)
	}
	sockets := make([]*socket, 0, len(g.sockets))
	for _, s := range g.sockets {
		sockets = append(sockets, s)
	}
	for conn := range g.inflight {
		conn.Close()
	}
	g.mu.Unlock()

	// Accept loops end when their listener closes.
	for _, s := range sockets {
		s.ln.Close()
	}

	for _, c := range capsules {
		c.mu.Lock()
		c.closed = true
		var queued []*pending
		for _, s := range c.sockets {
			queued = append(queued, s.queue...)
			s.queue = nil
			s.queued.Store(0)
		}
		sessions := make([]*Session, 0, len(c.sessions))
		for s := range c.sessions {
			sessions = append(sessions, s)
		}
		c.mu.Unlock()

		for _, p := range queued {
			p.conn.Close()
		}
		for _, s := range sessions {
			s.Close(events.ReasonNodeShutdown)
		}
	}

	g.wg.Wait()

	var errs []error
	for _, s := range sockets {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(g.tokenPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
