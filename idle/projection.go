package idle

import (
	"cmp"
	"slices"
	"time"

	"github.com/astrid-os/astrid-node/events"
)

// Defaults and bounds of a Projection.
const (
	DefaultIdle          = 5 * time.Minute
	DefaultDedupeSize    = 32768
	DefaultDedupeWindow  = 2 * time.Minute
	DefaultTombstoneSize = 16384
	DefaultTombstoneTTL  = 10 * time.Minute
	DefaultMaxInstances  = 65536
	DefaultMaxNodes      = 4096

	// assumedInterval stands in for the heartbeat interval of a node that
	// has sent events but no heartbeat yet, or a heartbeat without one.
	assumedInterval = 30 * time.Second
	minInterval     = 10 * time.Millisecond
	maxInterval     = 10 * time.Minute

	// missedBeats is how many heartbeat intervals of silence drop a node.
	missedBeats = 3

	maxTimeout = 365 * 24 * time.Hour

	// maxOrphans bounds the disconnects remembered per instance whose
	// connect has not been seen (see instance.disconnect).
	maxOrphans = 8
)

// ProjectionConfig tunes a Projection. Zero fields take the defaults above.
type ProjectionConfig struct {
	// DefaultIdle is the idle timeout of an instance whose resolved timeout
	// the projection never learned (no loaded event, no heartbeat entry).
	DefaultIdle time.Duration

	// DedupeSize and DedupeWindow bound the message ids remembered to drop
	// duplicates: the last DedupeSize ids, each for DedupeWindow.
	DedupeSize   int
	DedupeWindow time.Duration

	// TombstoneSize and TombstoneTTL bound the unloaded instances
	// remembered so that a late event does not bring one back.
	TombstoneSize int
	TombstoneTTL  time.Duration

	// MaxInstances and MaxNodes bound the projection against a flood of
	// events naming made-up instances or nodes; beyond them new ones are
	// ignored.
	MaxInstances int
	MaxNodes     int

	// Node, if set, restricts the projection to the events of one node:
	// a monitor inside a node watches only its own capsules.
	Node string
}

func (c ProjectionConfig) withDefaults() ProjectionConfig {
	if c.DefaultIdle <= 0 {
		c.DefaultIdle = DefaultIdle
	}
	if c.DedupeSize <= 0 {
		c.DedupeSize = DefaultDedupeSize
	}
	if c.DedupeWindow <= 0 {
		c.DedupeWindow = DefaultDedupeWindow
	}
	if c.TombstoneSize <= 0 {
		c.TombstoneSize = DefaultTombstoneSize
	}
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = DefaultTombstoneTTL
	}
	if c.MaxInstances <= 0 {
		c.MaxInstances = DefaultMaxInstances
	}
	if c.MaxNodes <= 0 {
		c.MaxNodes = DefaultMaxNodes
	}
	return c
}

// Result says what Apply did with an event.
type Result int

const (
	Applied    Result = iota // the event changed or confirmed the projection
	Duplicate                // its message id was seen already
	Stale                    // older than the node's last heartbeat, which counts it
	Tombstoned               // for an instance already unloaded
	Ignored                  // unknown type, bad ids, another node, or over a bound
)

func (r Result) String() string {
	switch r {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Stale:
		return "stale"
	case Tombstoned:
		return "tombstoned"
	case Ignored:
		return "ignored"
	}
	return "unknown"
}

// Stats counts what a Projection has done since it was made.
type Stats struct {
	Applied    uint64
	Duplicates uint64
	Stale      uint64
	Tombstoned uint64
	Ignored    uint64

	// Corrections counts stream counts that a heartbeat or an unload
	// refusal found wrong and replaced.
	Corrections uint64

	// Dropped counts instances dropped because a heartbeat no longer
	// listed them or their node fell silent.
	Dropped uint64
}

// InstanceState is the projection's view of one instance.
type InstanceState struct {
	Node     string
	Capsule  string
	Instance string
	Streams  int

	// IdleSince is when Streams last became 0 (or when the projection
	// first saw the instance at 0); zero while Streams > 0.
	IdleSince time.Time

	// Timeout is the resolved idle timeout, 0 meaning never. TimeoutKnown
	// is false when the node never told it and DefaultIdle stands in.
	Timeout      time.Duration
	TimeoutKnown bool

	// NodeHeard is whether a heartbeat from the node has been seen. No
	// instance is due for unload before.
	NodeHeard bool
}

// NodeDrop is a node dropped for silence.
type NodeDrop struct {
	Node      string
	Instances int
	Silence   time.Duration
}

// Projection is the count of active streams of every instance, built from
// events alone. It is pure: no I/O, no clock (now is passed in), no
// goroutines, and the same events at the same times give the same state.
// It is not safe for concurrent use.
type Projection struct {
	cfg   ProjectionConfig
	nodes map[string]*nodeState
	count int // instances over all nodes

	seen  *recent // message ids
	tombs *recent // tombKey(node, instance) of unloaded instances
	stats Stats
}

type nodeState struct {
	id        string
	instances map[string]*instance

	// heard is set by the first accepted heartbeat; hb is its position.
	// Events at or before hb are already counted by it.
	heard bool
	hb    pos

	lastHeard time.Time // arrival of the last accepted heartbeat, else first sighting
	interval  time.Duration
	gen       uint64 // heartbeat generation, to find unlisted instances
}

type instance struct {
	capsule      string
	id           string
	streams      int
	idleSince    time.Time
	timeout      time.Duration
	timeoutKnown bool
	created      pos
	seenGen      uint64
	orphans      []orphanEnd
}

// orphanEnd is a disconnect that found no stream to end.
type orphanEnd struct {
	stream string
	at     pos
}

// NewProjection returns an empty projection.
func NewProjection(cfg ProjectionConfig) *Projection {
	cfg = cfg.withDefaults()
	return &Projection{
		cfg:   cfg,
		nodes: make(map[string]*nodeState),
		seen:  newRecent(cfg.DedupeSize, cfg.DedupeWindow),
		tombs: newRecent(cfg.TombstoneSize, cfg.TombstoneTTL),
	}
}

// Stats returns the counters.
func (p *Projection) Stats() Stats { return p.stats }

// Apply folds one event, received at now, into the projection.
func (p *Projection) Apply(ev events.Event, now time.Time) Result {
	r := p.apply(ev, now)
	switch r {
	case Applied:
		p.stats.Applied++
	case Duplicate:
		p.stats.Duplicates++
	case Stale:
		p.stats.Stale++
	case Tombstoned:
		p.stats.Tombstoned++
	case Ignored:
		p.stats.Ignored++
	}
	return r
}

func (p *Projection) apply(ev events.Event, now time.Time) Result {
	if ev.MsgID != "" {
		if p.seen.has(ev.MsgID, now) {
			return Duplicate
		}
		p.seen.add(ev.MsgID, now)
	}

	nodeID := eventNode(ev)
	if !validToken(nodeID) || (p.cfg.Node != "" && nodeID != p.cfg.Node) {
		return Ignored
	}
	at := pos{seq: ev.Seq, ts: ev.Timestamp}

	switch pl := ev.Payload.(type) {
	case events.Connect:
		return p.applyStream(nodeID, ev, at, now, true)
	case events.Disconnect:
		return p.applyStream(nodeID, ev, at, now, false)
	case events.Loaded:
		return p.applyLoaded(nodeID, pl, at, now)
	case events.Unloaded:
		return p.applyUnloaded(nodeID, pl, now)
	case events.Heartbeat:
		return p.applyHeartbeat(nodeID, pl, at, now)
	}
	return Ignored
}

// eventNode is the node an event comes from: its Astrid-Node header, or
// the node its payload names. A header and a payload that disagree name no
// node, and the event is ignored.
func eventNode(ev events.Event) string {
	var inPayload string
	switch pl := ev.Payload.(type) {
	case events.Loaded:
		inPayload = pl.Node
	case events.Unloaded:
		inPayload = pl.Node
	case events.Heartbeat:
		inPayload = pl.Node
	default:
		return ev.Node
	}
	switch {
	case ev.Node == "":
		return inPayload
	case inPayload == "" || inPayload == ev.Node:
		return ev.Node
	}
	return ""
}

func (p *Projection) applyStream(nodeID string, ev events.Event, at pos, now time.Time,
	open bool) Result {
	if !validToken(ev.Instance) || !validToken(ev.Capsule) {
		return Ignored
	}
	n := p.node(nodeID, now)
	if n == nil {
		return Ignored
	}
	if n.heard && !after(at, n.hb) {
		return Stale
	}

	// A client event for an instance not seen loaded means its loaded
	// event was lost or is late: the stream proves the instance exists.
	in := n.instances[ev.Instance]
	if in == nil {
		if p.tombs.has(tombKey(nodeID, ev.Instance), now) {
			return Tombstoned
		}
		if in = p.newInstance(n, ev.Capsule, ev.Instance, at, now); in == nil {
			return Ignored
		}
	}

	stream := ev.Stream
	if len(stream) > 32 {
		stream = ""
	}
	if open {
		in.connect(stream, at)
	} else {
		in.disconnect(stream, at, now)
	}
	return Applied
}

func (p *Projection) applyLoaded(nodeID string, pl events.Loaded, at pos, now time.Time) Result {
	if !validToken(pl.Instance) || !validToken(pl.Capsule) {
		return Ignored
	}
	n := p.node(nodeID, now)
	if n == nil {
		return Ignored
	}

	if in := n.instances[pl.Instance]; in != nil {
		in.capsule = pl.Capsule
		in.setTimeout(pl.IdleTimeoutMS)
		return Applied
	}
	if p.tombs.has(tombKey(nodeID, pl.Instance), now) {
		return Tombstoned
	}

	// Loaded before the last heartbeat yet not in it: unloaded since.
	if n.heard && !after(at, n.hb) {
		return Stale
	}
	in := p.newInstance(n, pl.Capsule, pl.Instance, at, now)
	if in == nil {
		return Ignored
	}
	in.setTimeout(pl.IdleTimeoutMS)
	return Applied
}

// applyUnloaded applies whatever its position: an unload is final, an
// instance id is never loaded twice.
func (p *Projection) applyUnloaded(nodeID string, pl events.Unloaded, now time.Time) Result {
	if !validToken(pl.Instance) {
		return Ignored
	}
	p.forget(nodeID, pl.Instance, now)
	return Applied
}

func (p *Projection) applyHeartbeat(nodeID string, pl events.Heartbeat, at pos,
	now time.Time) Result {
	n := p.node(nodeID, now)
	if n == nil {
		return Ignored
	}
	if n.heard && !after(at, n.hb) {
		return Stale
	}
	n.heard = true
	n.hb = at
	n.lastHeard = now
	n.interval = clampInterval(pl.IntervalMS)
	n.gen++

	// The node's counts are authoritative: they replace ours, whatever
	// events were lost or doubled on the way.
	for _, st := range pl.Instances {
		if !validToken(st.Instance) || !validToken(st.Capsule) {
			continue
		}
		in := n.instances[st.Instance]
		if in == nil {
			if p.tombs.has(tombKey(nodeID, st.Instance), now) {
				continue
			}
			if in = p.newInstance(n, st.Capsule, st.Instance, at, now); in == nil {
				continue
			}
		} else if in.streams != st.Streams {
			p.stats.Corrections++
		}
		in.seenGen = n.gen
		in.capsule = st.Capsule
		in.setTimeout(st.IdleTimeoutMS)
		in.resync(st.Streams, now)
		in.orphans = nil
	}

	// An instance the heartbeat does not list is not loaded, unless an
	// event newer than the heartbeat created it.
	for id, in := range n.instances {
		if in.seenGen != n.gen && !after(in.created, at) {
			p.drop(n, id)
		}
	}
	return Applied
}

// node returns the state of node id, making it if needed; nil when
// MaxNodes are known already.
func (p *Projection) node(id string, now time.Time) *nodeState {
	if n := p.nodes[id]; n != nil {
		return n
	}
	if len(p.nodes) >= p.cfg.MaxNodes {
		return nil
	}
	n := &nodeState{
		id:        id,
		instances: make(map[string]*instance),
		lastHeard: now,
		interval:  assumedInterval,
	}
	p.nodes[id] = n
	return n
}

// newInstance adds an instance with no streams, idle from now; nil when
// MaxInstances are known already.
func (p *Projection) newInstance(n *nodeState, capsule, id string, at pos,
	now time.Time) *instance {
	if p.count >= p.cfg.MaxInstances {
		return nil
	}
	in := &instance{capsule: capsule, id: id, idleSince: now, created: at}
	n.instances[id] = in
	p.count++
	return in
}

func (p *Projection) drop(n *nodeState, id string) {
	if _, ok := n.instances[id]; !ok {
		return
	}
	delete(n.instances, id)
	p.count--
	p.stats.Dropped++
}

// forget removes an unloaded instance and leaves a tombstone so that its
// late events do not bring it back.
func (p *Projection) forget(nodeID, id string, now time.Time) {
	if n := p.nodes[nodeID]; n != nil {
		if _, ok := n.instances[id]; ok {
			delete(n.instances, id)
			p.count--
		}
	}
	p.tombs.add(tombKey(nodeID, id), now)
}

// MarkUnloaded records that the node unloaded the instance, as its reply
// to an unload request said; the unloaded event that follows is then
// redundant.
func (p *Projection) MarkUnloaded(node, instance string, now time.Time) {
	if validToken(node) && validToken(instance) {
		p.forget(node, instance, now)
	}
}

// Resync replaces an instance's stream count with the node's, as a refused
// unload request reported it, and restarts its idle clock. It reports
// whether the instance is known.
func (p *Projection) Resync(node, instance string, streams int, now time.Time) bool {
	n := p.nodes[node]
	if n == nil {
		return false
	}
	in := n.instances[instance]
	if in == nil {
		return false
	}
	streams = max(streams, 0)
	if in.streams != streams {
		p.stats.Corrections++
	}
	in.streams = streams
	in.idleSince = time.Time{}
	if streams == 0 {
		in.idleSince = now
	}
	return true
}

// Expire drops the nodes silent for more than missedBeats heartbeat
// intervals, with their instances, and forgets expired message ids and
// tombstones.
func (p *Projection) Expire(now time.Time) []NodeDrop {
	var drops []NodeDrop
	for id, n := range p.nodes {
		silence := now.Sub(n.lastHeard)
		if silence <= missedBeats*n.interval {
			continue
		}
		drops = append(drops, NodeDrop{Node: id, Instances: len(n.instances),
			Silence: silence})
		p.count -= len(n.instances)
		p.stats.Dropped += uint64(len(n.instances))
		delete(p.nodes, id)
	}
	slices.SortFunc(drops, func(a, b NodeDrop) int { return cmp.Compare(a.Node, b.Node) })

	p.seen.prune(now)
	p.tombs.prune(now)
	return drops
}

// Due returns the instances idle for at least their timeout at now, on
// nodes heard from, sorted by node and instance.
func (p *Projection) Due(now time.Time) []InstanceState {
	var due []InstanceState
	for _, n := range p.nodes {
		if !n.heard {
			continue
		}
		for _, in := range n.instances {
			t := p.timeout(in)
			if in.streams == 0 && t > 0 && now.Sub(in.idleSince) >= t {
				due = append(due, p.state(n, in))
			}
		}
	}
	sortStates(due)
	return due
}

// Instances returns every instance, sorted by node and instance.
func (p *Projection) Instances() []InstanceState {
	out := make([]InstanceState, 0, p.count)
	for _, n := range p.nodes {
		for _, in := range n.instances {
			out = append(out, p.state(n, in))
		}
	}
	sortStates(out)
	return out
}

// Instance returns one instance.
func (p *Projection) Instance(node, instance string) (InstanceState, bool) {
	n := p.nodes[node]
	if n == nil {
		return InstanceState{}, false
	}
	in := n.instances[instance]
	if in == nil {
		return InstanceState{}, false
	}
	return p.state(n, in), true
}

// Len returns the number of instances.
func (p *Projection) Len() int { return p.count }

// Cadence returns the smallest positive idle timeout and the smallest
// heartbeat interval known (0 when none), so that a caller can check
// often enough.
func (p *Projection) Cadence() (timeout, interval time.Duration) {
	for _, n := range p.nodes {
		if n.heard && (interval == 0 || n.interval < interval) {
			interval = n.interval
		}
		for _, in := range n.instances {
			if t := p.timeout(in); t > 0 && (timeout == 0 || t < timeout) {
				timeout = t
			}
		}
	}
	return timeout, interval
}

func (p *Projection) timeout(in *instance) time.Duration {
	if in.timeoutKnown {
		return in.timeout
	}
	return p.cfg.DefaultIdle
}

func (p *Projection) state(n *nodeState, in *instance) InstanceState {
	return InstanceState{
		Node:         n.id,
		Capsule:      in.capsule,
		Instance:     in.id,
		Streams:      in.streams,
		IdleSince:    in.idleSince,
		Timeout:      p.timeout(in),
		TimeoutKnown: in.timeoutKnown,
		NodeHeard:    n.heard,
	}
}

func (in *instance) connect(stream string, at pos) {
	// The disconnect of this stream came first: the two cancel out.
	for i, o := range in.orphans {
		if stream != "" && o.stream == stream && after(o.at, at) {
			in.orphans = slices.Delete(in.orphans, i, i+1)
			return
		}
	}
	in.streams++
	in.idleSince = time.Time{}
}

func (in *instance) disconnect(stream string, at pos, now time.Time) {
	if in.streams > 0 {
		in.streams--
		if in.streams == 0 {
			in.idleSince = now
		}
		return
	}

	// The count stays at 0: the stream's connect was lost, or is late. A
	// late one must not count, so remember the stream. Either way a client
	// was just there, so the idle clock starts again.
	in.idleSince = now
	if stream == "" {
		return
	}
	if len(in.orphans) == maxOrphans {
		in.orphans = slices.Delete(in.orphans, 0, 1)
	}
	in.orphans = append(in.orphans, orphanEnd{stream: stream, at: at})
}

// resync takes the node's count. The idle clock keeps running if the
// instance was idle already; it starts now if it just became idle.
func (in *instance) resync(streams int, now time.Time) {
	was := in.streams
	in.streams = streams
	switch {
	case streams > 0:
		in.idleSince = time.Time{}
	case was > 0 || in.idleSince.IsZero():
		in.idleSince = now
	}
}

func (in *instance) setTimeout(ms int64) {
	in.timeoutKnown = true
	switch {
	case ms <= 0:
		in.timeout = 0
	case ms >= maxTimeout.Milliseconds():
		in.timeout = maxTimeout
	default:
		in.timeout = time.Duration(ms) * time.Millisecond
	}
}

func clampInterval(ms int64) time.Duration {
	if ms <= 0 {
		return assumedInterval
	}
	if ms >= maxInterval.Milliseconds() {
		return maxInterval
	}
	return max(time.Duration(ms)*time.Millisecond, minInterval)
}

func tombKey(node, instance string) string { return node + "/" + instance }

// validToken reports whether s can name a node, capsule or instance: 1 to
// 64 of [A-Za-z0-9_-]. That bounds the memory an event can claim and keeps
// a node id a single token of a NATS subject.
func validToken(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

var tokenByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_'
	}
	return t
}()

func sortStates(s []InstanceState) {
	slices.SortFunc(s, func(a, b InstanceState) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Instance, b.Instance))
	})
}
