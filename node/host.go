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

// crash backoff: a capsule that crashes within crashWindow of its load is
// reactivated only after a delay that doubles per such crash, up to
// maxBackoff.
const (
	crashWindow  = 5 * time.Second
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 30 * time.Second
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

type crashState struct {
	backoff time.Duration
	until   time.Time
	timer   *time.Timer
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

// activate is the gateway's hook for a stream that waits on a capsule with
// no instance: socket activation. The runtime instantiates once however
// many clients arrive together.
func (h *Host) activate(capsule string) {
	if h.ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	cs := h.crashes[capsule]
	if cs != nil && time.Now().Before(cs.until) {
		// The capsule crashed soon after its last load; a timer is set
		// to try again once the backoff ends.
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()

	_, err := h.rt.Load(h.ctx, capsule, events.LoadActivation)
	switch {
	case err == nil, errors.Is(err, runtime.ErrAlreadyLoaded):
	case h.ctx.Err() != nil:
	default:
		h.log.Error("activation failed", "capsule", capsule, "err", err)
	}
}

// exited handles an instance that ended by itself (a crash). Waiting
// clients get a new instance after a backoff that grows while the capsule
// keeps crashing soon after its load.
func (h *Host) exited(info runtime.InstanceInfo, err error) {
	if h.ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	cs := h.crashes[info.Capsule]
	if cs == nil {
		cs = &crashState{}
		h.crashes[info.Capsule] = cs
	}
	if time.Since(info.Since) < crashWindow {
		cs.backoff = min(max(cs.backoff*2, firstBackoff), maxBackoff)
	} else {
		cs.backoff = 0
	}
	cs.until = time.Now().Add(cs.backoff)
	delay := cs.backoff
	if cs.timer != nil {
		cs.timer.Stop()
	}
	cs.timer = time.AfterFunc(delay, func() {
		if h.gw.Waiting(info.Capsule) > 0 {
			h.activate(info.Capsule)
		}
	})
	h.mu.Unlock()
	h.log.Warn("capsule crashed", "capsule", info.Capsule, "instance", info.Instance,
		"err", err, "reactivate_after", delay)
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

// controlHost adapts the Host to the control service.
type controlHost struct{ h *Host }

func (c controlHost) List() []control.InstanceInfo {
	loaded := map[string]runtime.InstanceInfo{}
	for _, in := range c.h.rt.List() {
		loaded[in.Capsule] = in
	}
	var out []control.InstanceInfo
	for _, cp := range c.h.rt.Capsules() {
		m := cp.Manifest
		info := control.InstanceInfo{Capsule: m.Name}
		if len(m.NetBind) > 0 {
			info.Socket = m.NetBind[0]
		}
		if in, ok := loaded[m.Name]; ok {
			info.Loaded, info.Instance, info.Streams = true, in.Instance, in.Streams
			info.Since = in.Since.UTC().Format(time.RFC3339)
		}
		out = append(out, info)
	}
	return out
}

func (c controlHost) Load(ctx context.Context, capsule string) control.Reply {
	in, err := c.h.rt.Load(ctx, capsule, events.LoadRequest)
	if err != nil && !errors.Is(err, runtime.ErrAlreadyLoaded) {
		return control.Reply{Error: err.Error()}
	}
	return control.Reply{OK: true, Instance: in.Instance, Streams: in.Streams}
}

func (c controlHost) Unload(ctx context.Context, req control.UnloadRequest) control.Reply {
	res, err := c.h.rt.Unload(ctx, runtime.UnloadRequest{Capsule: req.Capsule,
		Instance: req.Instance, Reason: req.Reason, IfIdle: req.IfIdle})
	if err != nil {
		rep := control.Reply{Error: err.Error(), Instance: req.Instance}
		if errors.Is(err, runtime.ErrBusy) {
			rep.Streams = c.h.gw.Active(req.Capsule)
		}
		return rep
	}
	return control.Reply{OK: true, Instance: res.Instance, Streams: res.StreamsClosed}
}

func (c controlHost) Stats() control.Stats {
	st := control.Stats{Capsules: len(c.h.rt.Capsules()),
		UptimeSec: int64(time.Since(c.h.start).Seconds())}
	for _, in := range c.h.rt.List() {
		st.Loaded++
		st.Streams += in.Streams
	}
	return st
}
