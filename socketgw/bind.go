package socketgw

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ValidName reports whether name is a valid capsule or socket name.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// SocketPath is the path of socket name inside runDir.
func SocketPath(runDir, name string) string {
	return filepath.Join(runDir, name+".sock")
}

// Bind binds RunDir/<socket>.sock for capsule and starts accepting
// clients on it. The node calls it before the capsule's first instance
// starts; the socket stays bound across instances until Close.
func (g *Gateway) Bind(capsuleName, socketName string) error {
	if !ValidName(capsuleName) {
		return fmt.Errorf("invalid capsule name %q (want [a-z][a-z0-9-]{0,62})", capsuleName)
	}
	if !ValidName(socketName) {
		return fmt.Errorf("invalid socket name %q (want [a-z][a-z0-9-]{0,62})", socketName)
	}
	path := SocketPath(g.cfg.RunDir, socketName)
	if len(path)+1 > sunPathMax {
		return fmt.Errorf("socket path %s is %d bytes; the limit is %d with its NUL: "+
			"use a shorter ASTRID_HOME", path, len(path), sunPathMax-1)
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errors.New("gateway is closed")
	}
	if s := g.sockets[socketName]; s != nil {
		return fmt.Errorf("socket %q is already bound for capsule %q", socketName, s.c.name)
	}
	if err := clearStale(path); err != nil {
		return err
	}

	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("binding socket %s: %w", path, err)
	}
	// Close removes the file itself, after its streams ended.
	ln.SetUnlinkOnClose(false)
	// The run dir is 0700, so the moment before this chmod exposes nothing.
	if err := os.Chmod(path, g.socketMode); err != nil {
		ln.Close()
		os.Remove(path)
		return fmt.Errorf("restricting socket %s: %w", path, err)
	}

	c := g.capsuleLocked(capsuleName)
	s := &socket{c: c, name: socketName, path: path, ln: ln}
	c.mu.Lock()
	c.sockets = append(c.sockets, s)
	c.mu.Unlock()
	g.sockets[socketName] = s

	g.wg.Add(1)
	go g.acceptLoop(s)
	return nil
}

// clearStale removes a socket file left by a node that died. A live
// listener behind it, a symlink or any other kind of file is an error.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking socket path: %w", err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("socket path %s is a symlink; refusing it", path)
	case fi.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("socket path %s exists and is not a socket", path)
	}

	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("socket %s is in use by a live listener (another node?)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// acceptLoop accepts connections on s and runs each handshake in its own
// goroutine, at most maxHandshakes at once. It waits for a free slot
// before accepting, so surplus clients wait in the listen backlog.
func (g *Gateway) acceptLoop(s *socket) {
	defer g.wg.Done()
	slots := make(chan struct{}, maxHandshakes)
	log := g.cfg.Logger.With("capsule", s.c.name, "socket", s.name)
	backoff := 5 * time.Millisecond

	for {
		slots <- struct{}{}
		conn, err := s.ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors and the like: back off, keep going.
			<-slots
			log.Warn("accepting a client failed", "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond

		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			conn.Close()
			return
		}
		g.inflight[conn] = struct{}{}
		g.wg.Add(1)
		g.mu.Unlock()

		go func() {
			defer g.wg.Done()
			defer func() { <-slots }()
			g.admit(s, conn, log)
		}()
	}
}

// admit checks one client and queues it for the capsule if it passes.
func (g *Gateway) admit(s *socket, conn *net.UnixConn, log *slog.Logger) {
	ok := false
	defer func() {
		g.mu.Lock()
		delete(g.inflight, conn)
		g.mu.Unlock()
		if !ok {
			conn.Close()
		}
	}()

	// The uid check comes before reading a single byte from the client.
	uid, pid, err := peerCred(conn)
	if err != nil {
		log.Warn("client dropped: no peer credentials", "security_event", true, "err", err)
		return
	}
	if uid != g.cfg.AllowedUID {
		log.Warn("client dropped: wrong uid", "security_event", true,
			"peer_uid", uid, "peer_pid", pid, "allowed_uid", g.cfg.AllowedUID)
		return
	}

	clientVersion, early, err := g.handshake(conn)
	if err != nil {
		log.Warn("client rejected in handshake", "security_event", true,
			"peer_uid", uid, "peer_pid", pid, "client_version", clip(clientVersion),
			"replied", !errors.Is(err, errDrop), "err", err)
		return
	}
	log.Debug("client authenticated", "peer_uid", uid, "peer_pid", pid,
		"client_version", clip(clientVersion))

	// Past this point the queue owns conn, also when the gateway closes.
	ok = true
	s.c.enqueue(s, &pending{conn: conn, uid: uid, pid: pid, early: early})
}

// clip bounds a client-chosen string before it reaches the log.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
