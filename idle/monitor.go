package idle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/events"
)

// Defaults of a Monitor.
const (
	DefaultRequestTimeout = 2 * time.Second
	DefaultMaxInFlight    = 32

	// eventBuffer is how many received events wait for the monitor before
	// nats.go drops new ones (a slow consumer); heartbeats repair the loss.
	// It bounds a count, not bytes: see Limitations in docs/idle.md.
	eventBuffer = 1 << 14

	minTick    = 10 * time.Millisecond
	maxTick    = time.Second
	maxBackoff = time.Minute
)

// subjects are the events the monitor consumes.
var subjects = []string{
	events.SubjectConnected,
	events.SubjectDisconnect,
	events.SubjectLoaded,
	events.SubjectUnloaded,
	events.SubjectHeartbeat,
}

// Config configures a Monitor. Only Conn is required.
type Config struct {
	Conn   *nats.Conn
	Logger *slog.Logger // nil: discard

	// DefaultIdle is the idle timeout of an instance whose resolved
	// timeout the monitor never learned from its node; 5m if zero.
	DefaultIdle time.Duration

	// RequestTimeout bounds one unload request; 2s if zero. A request
	// that times out is retried with a backoff that starts here.
	RequestTimeout time.Duration

	// Tick is how often idleness and node silence are checked. Zero picks
	// min(1s, smallest idle timeout/4, smallest heartbeat interval/2),
	// at least 10ms, recomputed as timeouts are learned.
	Tick time.Duration

	// Now is the clock; time.Now if nil. Tests set it.
	Now func() time.Time

	// Node, if set, limits the monitor to the instances of one node: the
	// monitor that runs inside a node watches only that node.
	Node string

	// MaxInFlight bounds the unload requests outstanding at once; 32 if
	// zero. Due instances beyond it wait for a later check.
	MaxInFlight int
}

// Monitor is the idle monitor: it feeds the events it receives over NATS
// into a Projection and asks the owning node to unload each instance that
// stays idle for its timeout.
type Monitor struct {
	cfg   Config
	nc    *nats.Conn
	log   *slog.Logger
	now   func() time.Time
	ready chan struct{}
	ran   atomic.Bool

	mu   sync.Mutex
	proj *Projection // guarded by mu

	// Owned by the goroutine in Run.
	unloads     map[string]*unloadState // by tombKey(node, instance)
	inFlight    int
	subs        []*nats.Subscription
	dropped     int
	malformedAt time.Time
	malformedN  int
}

// New checks cfg and returns a Monitor; Run starts it.
func New(cfg Config) (*Monitor, error) {
	if cfg.Conn == nil {
		return nil, errors.New("idle monitor: Config.Conn is required")
	}
	if cfg.DefaultIdle < 0 || cfg.RequestTimeout < 0 || cfg.Tick < 0 || cfg.MaxInFlight < 0 {
		return nil, errors.New("idle monitor: durations and MaxInFlight must not be negative")
	}
	if cfg.Node != "" && !validToken(cfg.Node) {
		return nil, fmt.Errorf("idle monitor: invalid node id %q", cfg.Node)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DefaultIdle == 0 {
		cfg.DefaultIdle = DefaultIdle
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	return &Monitor{
		cfg:   cfg,
		nc:    cfg.Conn,
		log:   cfg.Logger,
		now:   cfg.Now,
		ready: make(chan struct{}),
		proj: NewProjection(ProjectionConfig{
			DefaultIdle: cfg.DefaultIdle,
			Node:        cfg.Node,
		}),
		unloads: make(map[string]*unloadState),
	}, nil
}

// Ready is closed once the monitor's subscriptions are live on the server.
// It stays open if Run ends before that.
func (m *Monitor) Ready() <-chan struct{} { return m.ready }

// Snapshot returns the monitor's view of every instance, sorted by node
// and instance.
func (m *Monitor) Snapshot() []InstanceState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proj.Instances()
}

// Stats returns the projection's counters.
func (m *Monitor) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proj.Stats()
}

// Run subscribes to the events and works until ctx is done, then
// unsubscribes, waits for its outstanding requests and returns nil. It
// returns an error if it cannot subscribe or the NATS connection closes
// for good (cancel ctx before closing the connection). A Monitor runs once.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.ran.CompareAndSwap(false, true) {
		return errors.New("idle monitor: Run called twice")
	}

	// One channel for all subjects: nats.go feeds channel subscriptions
	// from its single read loop, so the monitor sees the events in the
	// order the server sent them, which for one node is its publish order.
	// events.Subscribe would run one goroutine per subject and lose that.
	msgs := make(chan *nats.Msg, eventBuffer)
	defer m.unsubscribe()
	for _, subj := range subjects {
		sub, err := m.nc.ChanSubscribe(subj, msgs)
		if err != nil {
			return fmt.Errorf("idle monitor: subscribing to %s: %w", subj, err)
		}
		m.subs = append(m.subs, sub)
	}
	if live, err := m.confirmSubscriptions(ctx); !live {
		return err
	}
	close(m.ready)
	watching := m.cfg.Node
	if watching == "" {
		watching = "all nodes"
	}
	m.log.Info("idle monitor running", "watching", watching,
		"default_idle", m.cfg.DefaultIdle, "request_timeout", m.cfg.RequestTimeout)

	// Requests run in their own goroutines so that a slow node never
	// holds up the events; their results come back to this loop.
	results := make(chan unloadResult)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()

	next := m.tick()
	timer := time.NewTimer(next)
	defer timer.Stop()
	deadline := time.Now().Add(next)
	for {
		select {
		case <-ctx.Done():
			m.log.Info("idle monitor stopping")
			return nil
		case msg := <-msgs:
			// An event that teaches a shorter timeout or heartbeat
			// interval brings the next check forward.
			hint := m.receive(msg)
			if hint > 0 && time.Now().Add(hint).Before(deadline) {
				timer.Reset(hint)
				deadline = time.Now().Add(hint)
			}
		case r := <-results:
			m.settle(r)
		case <-timer.C:
			if m.nc.IsClosed() {
				return errors.New("idle monitor: NATS connection closed")
			}
			m.check(rctx, &wg, results)
			next = m.tick()
			timer.Reset(next)
			deadline = time.Now().Add(next)
		}
	}
}

// confirmSubscriptions waits until the server has the subscriptions. While
// NATS is unreachable nats.go keeps them and sends them on reconnect, so
// the monitor waits rather than fails. It reports false if ctx ends first
// (with a nil error) or the connection is closed (with an error).
func (m *Monitor) confirmSubscriptions(ctx context.Context) (bool, error) {
	for {
		fctx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
		err := m.nc.FlushWithContext(fctx)
		cancel()
		switch {
		case err == nil:
			return true, nil
		case ctx.Err() != nil:
			return false, nil
		case m.nc.IsClosed():
			return false, errors.New("idle monitor: NATS connection closed")
		}
		m.log.Warn("idle monitor: NATS has not confirmed the subscriptions yet", "err", err)

		// A flush that fails at once (no connection) must not spin.
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(m.cfg.RequestTimeout):
		}
	}
}

func (m *Monitor) unsubscribe() {
	for _, sub := range m.subs {
		err := sub.Unsubscribe()
		if err != nil && !m.nc.IsClosed() && !m.nc.IsDraining() {
			m.log.Warn("idle monitor: unsubscribing", "subject", sub.Subject, "err", err)
		}
	}
	m.subs = nil
}

// receive decodes one message and applies it. It returns the check
// interval the event's timeouts and heartbeat interval call for, or 0.
func (m *Monitor) receive(msg *nats.Msg) time.Duration {
	ev, err := events.Decode(msg)
	if err != nil {
		m.warnMalformed(msg.Subject, err)
		return 0
	}

	now := m.now()
	m.mu.Lock()
	before := m.proj.Stats()
	r := m.proj.Apply(ev, now)
	after := m.proj.Stats()
	m.mu.Unlock()

	if m.log.Enabled(context.Background(), slog.LevelDebug) {
		m.log.Debug("event", "topic", ev.Topic, "node", ev.Node, "capsule", ev.Capsule,
			"instance", ev.Instance, "stream", ev.Stream, "seq", ev.Seq, "result", r)
	}
	if n := after.Corrections - before.Corrections; n > 0 {
		m.log.Info("heartbeat corrected stream counts", "node", ev.Node, "corrections", n)
	}
	if n := after.Dropped - before.Dropped; n > 0 {
		m.log.Info("heartbeat no longer lists instances; dropped", "node", ev.Node,
			"instances", n)
	}
	if r != Applied || m.cfg.Tick > 0 {
		return 0
	}
	return tickHint(ev, m.cfg.DefaultIdle)
}

// tickHint is the check interval one event calls for: a quarter of the
// idle timeouts it carries, half the heartbeat interval; 0 if none.
func tickHint(ev events.Event, defaultIdle time.Duration) time.Duration {
	var t time.Duration
	shorter := func(d time.Duration) {
		if d > 0 && (t == 0 || d < t) {
			t = d
		}
	}
	switch pl := ev.Payload.(type) {
	case events.Loaded:
		shorter(time.Duration(pl.IdleTimeoutMS) * time.Millisecond / 4)
	case events.Heartbeat:
		shorter(clampInterval(pl.IntervalMS) / 2)
		for _, st := range pl.Instances {
			shorter(time.Duration(min(st.IdleTimeoutMS, maxTimeout.Milliseconds())) *
				time.Millisecond / 4)
		}
	case events.Connect, events.Disconnect:
		shorter(defaultIdle / 4)
	}
	if t == 0 {
		return 0
	}
	return min(max(t, minTick), maxTick)
}

// warnMalformed logs a malformed event, at most one line a second, so a
// flood of garbage cannot flood the log.
func (m *Monitor) warnMalformed(subject string, err error) {
	m.malformedN++
	now := time.Now()
	if now.Sub(m.malformedAt) < time.Second {
		return
	}
	// Nodes publish well-formed events; anything else on these subjects
	// comes from a broken or hostile publisher.
	m.log.Warn("dropping malformed event", "subject", subject, "err", err,
		"dropped_since_last_warning", m.malformedN, "security_event", true)
	m.malformedAt = now
	m.malformedN = 0
}

// check drops silent nodes and sends the unload requests that are due.
func (m *Monitor) check(ctx context.Context, wg *sync.WaitGroup, results chan<- unloadResult) {
	now := m.now()
	m.mu.Lock()
	drops := m.proj.Expire(now)
	due := m.proj.Due(now)
	m.mu.Unlock()

	// Forget the dealings with instances no longer due (unloaded, dropped,
	// busy again): their backoff does not carry over to a later idle spell.
	dueKeys := make(map[string]bool, len(due))
	for _, st := range due {
		dueKeys[tombKey(st.Node, st.Instance)] = true
	}
	for key, u := range m.unloads {
		if !u.inFlight && !dueKeys[key] {
			delete(m.unloads, key)
		}
	}

	for _, d := range drops {
		m.log.Warn("node silent; dropping it and its instances", "node", d.Node,
			"instances", d.Instances, "silence", d.Silence.Round(time.Millisecond))
	}
	m.reportDropped()

	for _, st := range due {
		if m.inFlight >= m.cfg.MaxInFlight {
			break
		}
		key := tombKey(st.Node, st.Instance)
		u := m.unloads[key]
		if u == nil {
			u = &unloadState{node: st.Node, instance: st.Instance}
			m.unloads[key] = u
		}
		if u.inFlight || now.Before(u.retryAt) {
			continue
		}
		u.inFlight = true
		m.inFlight++
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.request(ctx, st, results)
		}()
	}
}

// reportDropped warns when nats.go dropped events because the monitor
// fell behind.
func (m *Monitor) reportDropped() {
	total := 0
	for _, sub := range m.subs {
		if n, err := sub.Dropped(); err == nil {
			total += n
		}
	}
	if total > m.dropped {
		m.log.Warn("events dropped: the idle monitor fell behind; "+
			"the next heartbeats correct the counts", "dropped", total-m.dropped)
		m.dropped = total
	}
}

func (m *Monitor) tick() time.Duration {
	if m.cfg.Tick > 0 {
		return m.cfg.Tick
	}
	m.mu.Lock()
	timeout, interval := m.proj.Cadence()
	m.mu.Unlock()

	t := maxTick
	if timeout > 0 {
		t = min(t, timeout/4)
	}
	if interval > 0 {
		t = min(t, interval/2)
	}
	return max(t, minTick)
}
