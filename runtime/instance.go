package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
)

// InstanceInfo describes a loaded instance.
type InstanceInfo struct {
	Capsule     string
	Instance    string // UUID; the source_id of the instance's events
	Since       time.Time
	Streams     int           // open streams (Sockets.Active)
	IdleTimeout time.Duration // resolved: manifest, else Config.DefaultIdleTimeout
}

// UnloadRequest names the instance to unload. Instance "" means the
// capsule's current instance. With IfIdle the unload is refused (ErrBusy)
// while the instance has open streams.
type UnloadRequest struct {
	Capsule, Instance, Reason string
	IfIdle                    bool
}

// UnloadResult is what an unload did.
type UnloadResult struct {
	Instance      string
	StreamsClosed int
}

// instance is one load of a capsule. Its guest runs in run's goroutine;
// the host functions run on that goroutine too, so the fields marked
// "guest goroutine" need no lock.
type instance struct {
	r       *Runtime
	capsule *Capsule
	id      string
	since   time.Time
	idle    time.Duration
	log     *slog.Logger
	sockets Sockets // nil when the node runs without a socket gateway

	// ctx is cancelled when an unload starts: blocking host calls return
	// abi.ErrUnloading. killCtx is cancelled after the grace period (or
	// when the guest ended): wazero then closes the module even if the
	// guest never calls the host again.
	ctx     context.Context
	stop    context.CancelFunc
	killCtx context.Context
	kill    context.CancelFunc

	mod    api.Module
	start  api.Function
	stdout *lineWriter
	stderr *lineWriter

	lastErr []byte      // guest goroutine; message of the last failed host call
	ready   []abi.Ready // guest goroutine; reused by net_wait

	mu       sync.Mutex
	stopping bool        // guarded by mu; an unload was requested or the guest ended
	reason   string      // guarded by mu; the unload reason once stopping
	grace    *time.Timer // guarded by mu

	ended  chan struct{} // closed once the unloaded event is out
	result UnloadResult  // set before ended is closed
}

type instanceKey struct{}

// maxReady bounds the readiness records one net_wait returns.
const maxReady = 256

// Load starts an instance of the capsule called name. If one is already
// loaded it returns that instance's info and ErrAlreadyLoaded; concurrent
// Loads of one capsule instantiate once. A Load during an unload of the
// same capsule waits for the unload to finish, then starts a new instance.
func (r *Runtime) Load(ctx context.Context, name, reason string) (InstanceInfo, error) {
	c, ok := r.Capsule(name)
	if !ok {
		return InstanceInfo{}, fmt.Errorf("%w %q", ErrUnknownCapsule, name)
	}
	for {
		c.loadMu.Lock()
		r.mu.Lock()
		cur, closed := r.loaded[name], r.closed
		r.mu.Unlock()

		switch {
		case closed:
			c.loadMu.Unlock()
			return InstanceInfo{}, ErrClosed
		case cur != nil && !cur.isStopping():
			c.loadMu.Unlock()
			return cur.info(), fmt.Errorf("%w: %s instance %s", ErrAlreadyLoaded,
				name, cur.id)
		case cur != nil:
			c.loadMu.Unlock()
			select {
			case <-cur.ended:
				continue
			case <-ctx.Done():
				return InstanceInfo{}, fmt.Errorf("loading %s: %w", name, ctx.Err())
			}
		}

		in, err := r.startInstance(ctx, c, reason)
		c.loadMu.Unlock()
		if err != nil {
			return InstanceInfo{}, err
		}
		return in.info(), nil
	}
}

// startInstance instantiates c, publishes capsule.v1.loaded and starts the
// guest. Callers hold c.loadMu.
func (r *Runtime) startInstance(ctx context.Context, c *Capsule,
	reason string) (*instance, error) {
	m := c.Manifest
	id := uuid.NewString()
	log := r.log.With("capsule", m.Name, "instance", id)
	in := &instance{
		r:       r,
		capsule: c,
		id:      id,
		since:   time.Now(),
		idle:    r.cfg.DefaultIdleTimeout,
		log:     log,
		ready:   make([]abi.Ready, maxReady),
		lastErr: make([]byte, 0, 128),
		ended:   make(chan struct{}),
	}
	if m.HasIdleTimeout {
		in.idle = m.IdleTimeout
	}
	in.ctx, in.stop = context.WithCancel(context.Background())
	in.killCtx, in.kill = context.WithCancel(context.Background())
	in.stdout = newLineWriter(log, slog.LevelInfo, "stdout")
	in.stderr = newLineWriter(log, slog.LevelWarn, "stderr")

	// No start functions: instantiation must not run the guest on the
	// caller's goroutine; run does, under the instance's contexts.
	mc := wazero.NewModuleConfig().
		WithName(m.Name + "." + id).
		WithArgs(m.Name).
		WithStartFunctions().
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(in.nanosleep).
		WithRandSource(rand.Reader).
		WithStdout(in.stdout).
		WithStderr(in.stderr)
	mod, err := r.wr.InstantiateModule(ctx, c.compiled, mc)
	if err != nil {
		in.stop()
		in.kill()
		return nil, fmt.Errorf("instantiating capsule %q: %w", m.Name, err)
	}
	in.mod, in.start = mod, mod.ExportedFunction("_start")

	// Attach the sockets before the instance is visible to List.
	if r.cfg.Sockets != nil {
		in.sockets = r.cfg.Sockets(m.Name, id)
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		if in.sockets != nil {
			in.sockets.Close(events.ReasonNodeShutdown)
		}
		mod.Close(context.Background())
		in.stop()
		in.kill()
		return nil, ErrClosed
	}
	r.loaded[m.Name] = in
	r.mu.Unlock()

	if p := r.cfg.Events; p != nil {
		// A failed publish is logged by the publisher; the instance runs.
		_ = p.Loaded(m.Name, id, reason, in.idle)
	}
	log.Info("capsule loaded", "reason", reason, "idle_timeout", in.idle)

	callCtx := context.WithValue(in.killCtx, instanceKey{}, in)
	go in.run(callCtx)
	return in, nil
}

// nanosleep backs the guest's clock sleeps (WASI poll_oneoff). wazero's
// own sleeps cannot be interrupted, so a guest asleep for an hour would
// hold an unload hostage; this one wakes when the instance is killed.
func (in *instance) nanosleep(ns int64) {
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-in.killCtx.Done():
	}
}

// run executes the guest's _start and then ends the instance.
func (in *instance) run(ctx context.Context) {
	_, err := in.start.Call(ctx)
	in.end(err)
}

// end tears the instance down once its guest has stopped, whatever the
// cause: an unload that was requested, or a crash.
func (in *instance) end(callErr error) {
	in.mu.Lock()
	crashed := !in.stopping
	if crashed {
		in.stopping, in.reason = true, events.UnloadCrash
	}
	reason := in.reason
	if in.grace != nil {
		in.grace.Stop()
	}
	in.mu.Unlock()

	in.stop()
	in.kill()
	_ = in.mod.Close(context.Background())
	in.stdout.Flush()
	in.stderr.Flush()

	info := in.info()
	info.Streams = 0
	var exitErr error
	if crashed {
		exitErr = exitError(callErr)
		if r := in.r; r.cfg.OnExit != nil {
			r.cfg.OnExit(info, exitErr)
		}
	}

	closed := 0
	if in.sockets != nil {
		closed = in.sockets.Close(disconnectReason(reason))
	}
	in.result = UnloadResult{Instance: in.id, StreamsClosed: closed}

	r, name := in.r, in.capsule.Manifest.Name
	if p := r.cfg.Events; p != nil {
		_ = p.Unloaded(name, in.id, reason, closed)
	}

	// Leave the map only after the unloaded event is out, so a Load
	// waiting for this instance publishes its loaded event after it.
	r.mu.Lock()
	if r.loaded[name] == in {
		delete(r.loaded, name)
	}
	r.mu.Unlock()

	if crashed {
		in.log.Error("capsule crashed", "err", exitErr, "streams_closed", closed)
	} else {
		in.log.Info("capsule unloaded", "reason", reason, "streams_closed", closed)
	}
	close(in.ended)
}

// exitError describes how a guest that was not asked to stop ended.
func exitError(err error) error {
	var ee *sys.ExitError
	switch {
	case err == nil:
		return errors.New("guest returned from _start")
	case errors.As(err, &ee):
		return fmt.Errorf("guest exited with code %d", ee.ExitCode())
	default:
		return fmt.Errorf("guest trapped: %w", err)
	}
}

func disconnectReason(unloadReason string) string {
	switch unloadReason {
	case events.UnloadShutdown:
		return events.ReasonNodeShutdown
	case events.UnloadCrash:
		return events.ReasonCapsuleCrashed
	default:
		return events.ReasonCapsuleUnloaded
	}
}

func (in *instance) isStopping() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stopping
}

func (in *instance) info() InstanceInfo {
	streams := 0
	if in.sockets != nil {
		streams = in.sockets.Active()
	}
	return InstanceInfo{
		Capsule:     in.capsule.Manifest.Name,
		Instance:    in.id,
		Since:       in.since,
		Streams:     streams,
		IdleTimeout: in.idle,
	}
}

// requestStop starts an unload: blocking host calls wake with
// abi.ErrUnloading now, and the module is force-closed after the grace
// period. A second request keeps the first reason.
func (in *instance) requestStop(reason string, grace time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopping {
		return
	}
	in.stopping, in.reason = true, reason
	in.stop()
	in.grace = time.AfterFunc(grace, in.kill)
}

// Unload stops an instance and returns after its guest stopped and its
// unloaded event was published (or ctx ended first).
func (r *Runtime) Unload(ctx context.Context, req UnloadRequest) (UnloadResult, error) {
	r.mu.Lock()
	in := r.loaded[req.Capsule]
	_, known := r.capsules[req.Capsule]
	r.mu.Unlock()

	switch {
	case !known:
		return UnloadResult{}, fmt.Errorf("%w %q", ErrUnknownCapsule, req.Capsule)
	case in == nil:
		return UnloadResult{}, fmt.Errorf("%w: %s", ErrNotLoaded, req.Capsule)
	case req.Instance != "" && req.Instance != in.id:
		return UnloadResult{}, fmt.Errorf("%w: %s instance %s (current is %s)",
			ErrNotLoaded, req.Capsule, req.Instance, in.id)
	}
	// The gateway may accept a stream between this check and the stop;
	// it then ends that stream with reason capsule_unloaded.
	if n := in.info().Streams; req.IfIdle && n > 0 {
		return UnloadResult{Instance: in.id}, fmt.Errorf("%w: %s instance %s has %d",
			ErrBusy, req.Capsule, in.id, n)
	}

	reason := req.Reason
	if reason == "" {
		reason = events.UnloadRequest
	}
	in.requestStop(reason, r.cfg.Grace)

	select {
	case <-in.ended:
		return in.result, nil
	case <-ctx.Done():
		return UnloadResult{Instance: in.id}, fmt.Errorf("unloading %s: %w",
			req.Capsule, ctx.Err())
	}
}

// List returns the loaded instances sorted by capsule.
func (r *Runtime) List() []InstanceInfo {
	r.mu.Lock()
	ins := make([]*instance, 0, len(r.loaded))
	for _, in := range r.loaded {
		ins = append(ins, in)
	}
	r.mu.Unlock()

	infos := make([]InstanceInfo, len(ins))
	for i, in := range ins {
		infos[i] = in.info()
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Capsule < infos[j].Capsule })
	return infos
}
