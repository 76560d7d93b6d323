package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/idle"
	"github.com/astrid-os/astrid-node/runtime"
	"github.com/astrid-os/astrid-node/socketgw"
)

// Version is the node's release, reported by the control service and the
// handshake.
const Version = "0.1.0"

// HostConfig configures the capsule side of a node: what it loads, how it
// serves sockets and when it lets capsules go.
type HostConfig struct {
	CapsulesDir  string        // every subdirectory with a Capsule.toml is loaded at start
	CacheDir     string        // wazero compilation cache; "" = Home/cache
	IdleTimeout  time.Duration // for capsules whose manifest sets none; 0 = never
	MaxStreams   int           // active streams per capsule
	Grace        time.Duration // unload grace before a guest is force-closed
	ExitWhenIdle time.Duration // 0: off; else the node exits when no capsule had a stream that long
	// IdleMonitor runs an idle monitor inside the node: IdleMonitorLocal
	// watches this node only, IdleMonitorCluster every node it hears,
	// IdleMonitorOff none (a standalone `astrid-node idle` does the work).
	IdleMonitor string
	// HandshakeTimeout and WriteTimeout override the gateway defaults (0: default).
	HandshakeTimeout time.Duration
	WriteTimeout     time.Duration
}

// Idle monitor modes of HostConfig.IdleMonitor.
const (
	IdleMonitorLocal   = "local"
	IdleMonitorCluster = "cluster"
	IdleMonitorOff     = "off"
)

// Host runs the capsules of a node: the runtime, the socket gateway, the
// control service and, optionally, an idle monitor, wired together.
type Host struct {
	n   *Node
	cfg HostConfig
	log *slog.Logger
	rt  *runtime.Runtime
	gw  *socketgw.Gateway
	svc micro.Service

	ctx    context.Context // lives until Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	idle   chan struct{} // closed when ExitWhenIdle fires

	mu      sync.Mutex
	crashes map[string]*crashState // guarded by mu
	start   time.Time
}

// StartHost loads the capsules under cfg.CapsulesDir onto n and starts
// serving their sockets.
func StartHost(ctx context.Context, n *Node, cfg HostConfig) (*Host, error) {
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(n.cfg.Home, "cache")
	}
	hctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		n: n, cfg: cfg, log: n.log,
		ctx: hctx, cancel: cancel, idle: make(chan struct{}),
		crashes: map[string]*crashState{}, start: time.Now(),
	}
	if err := h.startAll(ctx); err != nil {
		h.Close(context.Background())
		return nil, err
	}
	n.SetInstances(h.Instances)
	return h, nil
}

func (h *Host) startAll(ctx context.Context) error {
	var err error
	h.gw, err = socketgw.New(socketgw.Config{
		RunDir:           h.n.RunDir(),
		Logger:           h.log,
		Events:           h.n.Publisher(),
		MaxStreams:       h.cfg.MaxStreams,
		HandshakeTimeout: h.cfg.HandshakeTimeout,
		WriteTimeout:     h.cfg.WriteTimeout,
		ServerVersion:    Version,
		OnPending:        h.activate,
	})
	if err != nil {
		return fmt.Errorf("socket gateway: %w", err)
	}
	h.rt, err = runtime.New(ctx, runtime.Config{
		CacheDir:           h.cfg.CacheDir,
		Logger:             h.log,
		Events:             h.n.Publisher(),
		Sockets:            func(c, i string) runtime.Sockets { return h.gw.Attach(c, i) },
		Grace:              h.cfg.Grace,
		DefaultIdleTimeout: h.cfg.IdleTimeout,
		OnExit:             h.exited,
	})
	if err != nil {
		return fmt.Errorf("capsule runtime: %w", err)
	}

	// Sockets are bound before any capsule starts, so a client that comes
	// early waits in the queue instead of being refused.
	caps, err := h.rt.AddAll(ctx, h.cfg.CapsulesDir)
	if err != nil {
		return err
	}
	for _, c := range caps {
		for _, sock := range c.Manifest.NetBind {
			if err := h.gw.Bind(c.Manifest.Name, sock); err != nil {
				return fmt.Errorf("capsule %s: %w", c.Manifest.Name, err)
			}
		}
	}
	for _, c := range caps {
		_, err := h.rt.Load(ctx, c.Manifest.Name, events.LoadStart)
		if err != nil && !errors.Is(err, runtime.ErrAlreadyLoaded) {
			return fmt.Errorf("loading capsule %s: %w", c.Manifest.Name, err)
		}
	}

	h.svc, err = control.Serve(h.n.Conn(), h.n.ID(), Version, controlHost{h}, h.log)
	if err != nil {
		return err
	}
	if h.cfg.IdleMonitor != IdleMonitorOff && h.cfg.IdleMonitor != "" {
		scope := h.n.ID()
		if h.cfg.IdleMonitor == IdleMonitorCluster {
			scope = ""
		}
		// The monitor names the node of each instance it acts on; a
		// logger already carrying this node's id would say "node" twice.
		mon, err := idle.New(idle.Config{Conn: h.n.Conn(),
			Logger:      h.n.cfg.Logger.With("part", "idle", "host", h.n.ID()),
			DefaultIdle: h.cfg.IdleTimeout, Node: scope})
		if err != nil {
			return err
		}
		h.goRun(func() {
			if err := mon.Run(h.ctx); err != nil {
				h.log.Error("idle monitor stopped", "err", err)
			}
		})
	}
	if h.cfg.ExitWhenIdle > 0 {
		h.goRun(h.watchExitWhenIdle)
	}
	return nil
}

func (h *Host) goRun(f func()) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		f()
	}()
}

// Instances is the heartbeat's content: every loaded instance with its
// authoritative count of open streams.
func (h *Host) Instances() []events.InstanceStatus {
	if h.rt == nil {
		return nil
	}
	list := h.rt.List()
	out := make([]events.InstanceStatus, len(list))
	for i, in := range list {
		out[i] = events.InstanceStatus{Capsule: in.Capsule, Instance: in.Instance,
			Streams: in.Streams, IdleTimeoutMS: in.IdleTimeout.Milliseconds()}
	}
	return out
}

// Idle is closed when ExitWhenIdle has passed with no stream on any
// capsule; the node should then Close and exit.
func (h *Host) Idle() <-chan struct{} { return h.idle }

func (h *Host) watchExitWhenIdle() {
	tick := min(h.cfg.ExitWhenIdle/4, time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		busy := false
		for _, c := range h.rt.Capsules() {
			if h.gw.Active(c.Manifest.Name) > 0 || h.gw.Waiting(c.Manifest.Name) > 0 {
				busy = true
			}
		}
		if busy {
			last = time.Now()
			continue
		}
		if time.Since(last) >= h.cfg.ExitWhenIdle {
			h.log.Info("no stream for the exit-when-idle period; exiting",
				"exit_when_idle", h.cfg.ExitWhenIdle)
			h.unloadAll(events.UnloadIdle)
			close(h.idle)
			return
		}
	}
}

func (h *Host) unloadAll(reason string) {
	for _, in := range h.rt.List() {
		_, err := h.rt.Unload(context.Background(), runtime.UnloadRequest{
			Capsule: in.Capsule, Instance: in.Instance, Reason: reason})
		if err != nil && !errors.Is(err, runtime.ErrNotLoaded) {
			h.log.Warn("unload failed", "capsule", in.Capsule, "instance", in.Instance,
				"err", err)
		}
	}
}

// Close stops the control service and the idle monitor, unloads every
// instance (reason shutdown) and closes the gateway, which removes the
// sockets and the token.
func (h *Host) Close(ctx context.Context) error {
	h.cancel()
	h.mu.Lock()
	for _, cs := range h.crashes {
		if cs.timer != nil {
			cs.timer.Stop()
		}
	}
	h.mu.Unlock()
	if h.svc != nil {
		h.svc.Stop()
	}
	h.wg.Wait()
	var errs []error
	if h.rt != nil {
		errs = append(errs, h.rt.Close(ctx))
	}
	if h.gw != nil {
		errs = append(errs, h.gw.Close())
	}
	return errors.Join(errs...)
}
