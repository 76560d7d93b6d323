// Package node is the process core of astrid-node: it prepares the node's
// home, starts the embedded NATS server (or joins an existing one), opens
// the node's own connection and publishes heartbeats. The runtime, the
// socket gateway, the control service and the idle monitor plug in
// through Conn, Publisher and Config.Instances; the caller writes the
// ready file once they are all up.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/events"
)

// Node is a running node. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	id     string
	log    *slog.Logger
	runDir string
	lock   *os.File

	srv *server.Server // nil when connected to an external server
	nc  *nats.Conn
	pub *events.Publisher
	url string

	instances atomic.Pointer[func() []events.InstanceStatus] // see SetInstances

	stopBeat context.CancelFunc
	beatDone chan struct{}

	shutOnce sync.Once
	shutErr  error
}

// Ready is the content of run/node.ready.
type Ready struct {
	Node    string `json:"node"`
	NATSURL string `json:"nats_url"`
	PID     int    `json:"pid"`
}

// Start prepares cfg.Home, starts or joins NATS, opens the node's
// connection and starts the heartbeat. ctx bounds the start only; the node
// runs until Shutdown. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}

	runDir, err := prepareHome(cfg.Home)
	if err != nil {
		return nil, err
	}
	lock, err := lockRun(runDir)
	if err != nil {
		return nil, err
	}
	id, err := loadNodeID(cfg.Home, cfg.NodeID)
	if err != nil {
		lock.Close()
		return nil, err
	}
	// A ready file from a node that crashed must not announce this one
	// before it is ready.
	os.Remove(filepath.Join(runDir, ReadyFile))

	n := &Node{cfg: cfg, id: id, log: cfg.Logger.With("node", id), runDir: runDir, lock: lock}
	if err := n.connect(ctx); err != nil {
		lock.Close()
		return nil, err
	}
	n.pub = events.NewPublisher(n.nc, id, n.log)

	beatCtx, stop := context.WithCancel(context.Background())
	n.stopBeat, n.beatDone = stop, make(chan struct{})
	go n.heartbeat(beatCtx)

	n.log.Info("node started", "nats", n.url, "embedded", n.srv != nil,
		"heartbeat", cfg.Heartbeat)
	return n, nil
}

// connect starts the embedded server or joins cfg.NATSURL and opens the
// node's connection.
func (n *Node) connect(ctx context.Context) error {
	if n.cfg.NATSURL != "" {
		nc, err := connectExternal(ctx, n.cfg, n.id, n.log)
		if err != nil {
			return err
		}
		n.nc, n.url = nc, redactURLs(n.cfg.NATSURL)
		return nil
	}

	s, err := startServer(ctx, n.cfg, n.id, n.log)
	if err != nil {
		return err
	}
	nc, err := connectEmbedded(s, n.id, n.log)
	if err != nil {
		stopServer(s)
		return err
	}
	n.srv, n.nc, n.url = s, nc, embeddedClientURL(s)
	return nil
}

// ID returns the node id.
func (n *Node) ID() string { return n.id }

// Conn returns the node's own NATS connection (in-process when embedded).
func (n *Node) Conn() *nats.Conn { return n.nc }

// Publisher returns the publisher every part of the node publishes with.
func (n *Node) Publisher() *events.Publisher { return n.pub }

// ClientURL returns the URL clients such as the nats CLI use: the embedded
// server's listener, or the configured NATS URL without credentials. It is
// empty for an embedded server without a client listener.
func (n *Node) ClientURL() string { return n.url }

// RunDir returns the node's private run directory.
func (n *Node) RunDir() string { return n.runDir }

// Server returns the embedded NATS server, or nil when the node joined an
// external one.
func (n *Node) Server() *server.Server { return n.srv }

// WriteReady writes run/node.ready (0600), announcing that the node is
// serving. Call it after everything else is plugged in.
func (n *Node) WriteReady() error {
	data, err := json.Marshal(Ready{Node: n.id, NATSURL: n.url, PID: os.Getpid()})
	if err != nil {
		panic("BUG: marshaling Ready: " + err.Error())
	}
	path := filepath.Join(n.runDir, ReadyFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing ready file: %w", err)
	}
	// Rename so a reader never sees half a file.
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing ready file: %w", err)
	}
	return nil
}

// Shutdown stops the heartbeat, drains the node's connection, shuts the
// embedded server down and removes the run files. Callers stop whatever
// publishes through the node (capsules, gateway) before calling it, so
// their last events drain too. It is idempotent; ctx bounds the drain.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() { n.shutErr = n.shutdown(ctx) })
	return n.shutErr
}

func (n *Node) shutdown(ctx context.Context) error {
	// Remove the ready file first: from here on the node is not serving.
	var errs []error
	if err := os.Remove(filepath.Join(n.runDir, ReadyFile)); err != nil &&
		!errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}

	n.stopBeat()
	<-n.beatDone

	if err := drain(ctx, n.nc); err != nil {
		errs = append(errs, err)
	}
	if n.srv != nil {
		stopServer(n.srv)
	}

	n.lock.Close()
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

// drain flushes what the node published and closes its connection, or
// closes it at once when ctx ends first.
func drain(ctx context.Context, nc *nats.Conn) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		if errors.Is(err, nats.ErrConnectionReconnecting) {
			return fmt.Errorf("NATS unreachable at shutdown; buffered events are lost: %w", err)
		}
		return fmt.Errorf("draining NATS connection: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return fmt.Errorf("draining NATS connection: %w", ctx.Err())
	}
}
