package idle

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// The event builders stamp seq and timestamp together as a Publisher
// does: event seq n of a node is at t0 + n ms. Message ids are unique per
// node and seq, so a duplicate is made by repeating a builder call.

func stamp(topic, node string, seq uint64, p events.Payload) events.Event {
	return events.Event{
		Topic:     topic,
		Payload:   p,
		Timestamp: t0.Add(time.Duration(seq) * time.Millisecond),
		Seq:       seq,
		MsgID:     fmt.Sprintf("%s-%d", node, seq),
		Node:      node,
	}
}

func connect(node, inst, stream string, seq uint64) events.Event {
	ev := stamp(events.SubjectConnected, node, seq, events.Connect{})
	ev.Capsule, ev.Instance, ev.Stream = "echo", inst, stream
	return ev
}

func disconnect(node, inst, stream string, seq uint64) events.Event {
	ev := stamp(events.SubjectDisconnect, node, seq,
		events.Disconnect{Reason: events.ReasonPeerClosed})
	ev.Capsule, ev.Instance, ev.Stream = "echo", inst, stream
	return ev
}

func loaded(node, inst string, seq uint64, timeoutMS int64) events.Event {
	ev := stamp(events.SubjectLoaded, node, seq, events.Loaded{Capsule: "echo",
		Instance: inst, Node: node, Reason: events.LoadStart, IdleTimeoutMS: timeoutMS})
	ev.Capsule, ev.Instance = "echo", inst
	return ev
}

func unloaded(node, inst string, seq uint64) events.Event {
	ev := stamp(events.SubjectUnloaded, node, seq, events.Unloaded{Capsule: "echo",
		Instance: inst, Node: node, Reason: events.UnloadIdle})
	ev.Capsule, ev.Instance = "echo", inst
	return ev
}

func heartbeat(node string, seq uint64, intervalMS int64,
	st ...events.InstanceStatus) events.Event {
	return stamp(events.SubjectHeartbeat, node, seq,
		events.Heartbeat{Node: node, IntervalMS: intervalMS, Instances: st})
}

func status(inst string, streams int) events.InstanceStatus {
	return events.InstanceStatus{Capsule: "echo", Instance: inst, Streams: streams,
		IdleTimeoutMS: 1000}
}

// step is one event arriving at t0+at, and what Apply should say.
type step struct {
	ev   events.Event
	at   time.Duration
	want Result
}

// describe renders instances as "node/instance=streams ...".
func describe(states []InstanceState) string {
	var parts []string
	for _, s := range states {
		parts = append(parts, fmt.Sprintf("%s/%s=%d", s.Node, s.Instance, s.Streams))
	}
	return strings.Join(parts, " ")
}

func TestProjectionApply(t *testing.T) {
	t.Parallel()
	edit := func(ev events.Event, f func(*events.Event)) events.Event {
		f(&ev)
		return ev
	}
	restarted := heartbeat("n1", 1, 100, status("b", 0))
	restarted.Timestamp = t0.Add(10 * time.Second)

	tests := []struct {
		name  string
		cfg   ProjectionConfig
		steps []step
		want  string // describe() of the final instances
	}{{
		name: "connects count",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{connect("n1", "a", "1", 2), 0, Applied},
			{connect("n1", "a", "2", 3), 0, Applied},
			{disconnect("n1", "a", "1", 4), 0, Applied},
		},
		want: "n1/a=1",
	}, {
		name: "duplicate message id ignored",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{connect("n1", "a", "1", 2), 0, Applied},
			{connect("n1", "a", "1", 2), 0, Duplicate},
			{loaded("n1", "a", 1, 1000), 0, Duplicate},
		},
		want: "n1/a=1",
	}, {
		name: "disconnect never goes below zero",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{connect("n1", "a", "1", 2), 0, Applied},
			{disconnect("n1", "a", "1", 3), 0, Applied},
			{disconnect("n1", "a", "2", 4), 0, Applied},
			{disconnect("n1", "a", "3", 5), 0, Applied},
		},
		want: "n1/a=0",
	}, {
		name: "disconnect before its connect cancels it",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{disconnect("n1", "a", "1", 3), 0, Applied},
			{connect("n1", "a", "1", 2), 0, Applied},
		},
		want: "n1/a=0",
	}, {
		name: "a later connect of the same stream id still counts",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{disconnect("n1", "a", "1", 2), 0, Applied},
			{connect("n1", "a", "1", 3), 0, Applied},
		},
		want: "n1/a=1",
	}, {
		name: "lost connect corrected by heartbeat",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{connect("n1", "a", "1", 2), 0, Applied},
			// seq 3, the connect of stream 2, was lost.
			{heartbeat("n1", 4, 100, status("a", 2)), 0, Applied},
			{disconnect("n1", "a", "1", 5), 0, Applied},
		},
		want: "n1/a=1",
	}, {
		name: "lost disconnect corrected by heartbeat",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{connect("n1", "a", "1", 2), 0, Applied},
			{heartbeat("n1", 4, 100, status("a", 0)), 0, Applied},
		},
		want: "n1/a=0",
	}, {
		name: "event older than the heartbeat is stale",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{heartbeat("n1", 5, 100, status("a", 1)), 0, Applied},
			{connect("n1", "a", "1", 4), 0, Stale},
			{disconnect("n1", "a", "1", 6), 0, Applied},
		},
		want: "n1/a=0",
	}, {
		name: "older heartbeat after a newer one is stale",
		steps: []step{
			{heartbeat("n1", 10, 100, status("a", 1)), 0, Applied},
			{heartbeat("n1", 9, 100, status("a", 0)), 0, Stale},
		},
		want: "n1/a=1",
	}, {
		name: "connect for an unknown instance creates it",
		steps: []step{
			{connect("n1", "a", "1", 2), 0, Applied},
			{connect("n2", "b", "1", 7), 0, Applied},
		},
		want: "n1/a=1 n2/b=1",
	}, {
		name: "late events after unload are tombstoned",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{connect("n1", "a", "1", 2), 0, Applied},
			{unloaded("n1", "a", 4), 0, Applied},
			{disconnect("n1", "a", "1", 3), 0, Tombstoned},
			{connect("n1", "a", "2", 5), 0, Tombstoned},
			{loaded("n1", "a", 1, 1000), 0, Duplicate},
		},
		want: "",
	}, {
		name: "heartbeat does not resurrect a tombstoned instance",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{unloaded("n1", "a", 3), 0, Applied},
			{heartbeat("n1", 2, 100, status("a", 0), status("b", 1)), 0, Applied},
		},
		want: "n1/b=1",
	}, {
		name: "tombstone expires",
		cfg:  ProjectionConfig{TombstoneTTL: time.Minute},
		steps: []step{
			{unloaded("n1", "a", 1), 0, Applied},
			{connect("n1", "a", "1", 2), 30 * time.Second, Tombstoned},
			{connect("n1", "a", "1", 3), 61 * time.Second, Applied},
		},
		want: "n1/a=1",
	}, {
		name: "heartbeat drops instances it does not list",
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Applied},
			{loaded("n2", "c", 1, 1000), 0, Applied},
			{heartbeat("n1", 2, 100, status("b", 0)), 0, Applied},
		},
		want: "n1/b=0 n2/c=0",
	}, {
		name: "instance loaded after the heartbeat survives it",
		steps: []step{
			{loaded("n1", "a", 3, 1000), 0, Applied},
			{heartbeat("n1", 2, 100), 0, Applied},
		},
		want: "n1/a=0",
	}, {
		name: "loaded event older than a heartbeat without it is stale",
		steps: []step{
			{heartbeat("n1", 5, 100), 0, Applied},
			{loaded("n1", "a", 3, 1000), 0, Stale},
		},
		want: "",
	}, {
		name: "restarted node: lower seq, later timestamp",
		steps: []step{
			{heartbeat("n1", 100, 100, status("a", 1)), 0, Applied},
			{restarted, 10 * time.Second, Applied},
		},
		want: "n1/b=0",
	}, {
		name: "header and payload naming different nodes",
		steps: []step{
			{edit(loaded("n1", "a", 1, 1000), func(e *events.Event) { e.Node = "n2" }),
				0, Ignored},
			{edit(heartbeat("n1", 2, 100, status("a", 0)),
				func(e *events.Event) { e.Node = "" }), 0, Applied},
		},
		want: "n1/a=0",
	}, {
		name: "bad ids ignored",
		steps: []step{
			{connect("n.1", "a", "1", 1), 0, Ignored},
			{connect("n1", "a*", "1", 2), 0, Ignored},
			{connect("n1", strings.Repeat("x", 65), "1", 3), 0, Ignored},
			{edit(connect("n1", "a", "1", 4), func(e *events.Event) { e.Capsule = "" }),
				0, Ignored},
			{heartbeat("n1", 5, 100, status("", 3), status("a b", 1)), 0, Applied},
		},
		want: "",
	}, {
		name: "unknown payload type ignored",
		steps: []step{
			{stamp("client.v1.connected", "n1", 1,
				events.Unknown{Type: "resumed", Raw: json.RawMessage(`{}`)}), 0, Ignored},
		},
		want: "",
	}, {
		name: "monitor of one node ignores the others",
		cfg:  ProjectionConfig{Node: "n2"},
		steps: []step{
			{loaded("n1", "a", 1, 1000), 0, Ignored},
			{loaded("n2", "b", 1, 1000), 0, Applied},
		},
		want: "n2/b=0",
	}, {
		name: "instance bound",
		cfg:  ProjectionConfig{MaxInstances: 2},
		steps: []step{
			{connect("n1", "a", "1", 1), 0, Applied},
			{connect("n1", "b", "1", 2), 0, Applied},
			{connect("n1", "c", "1", 3), 0, Ignored},
			{unloaded("n1", "a", 4), 0, Applied},
			{connect("n1", "c", "1", 5), 0, Applied},
		},
		want: "n1/b=1 n1/c=1",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewProjection(tt.cfg)
			for i, s := range tt.steps {
				if got := p.Apply(s.ev, t0.Add(s.at)); got != s.want {
					t.Errorf("step %d (%s seq %d): got %v; want %v",
						i, s.ev.Topic, s.ev.Seq, got, s.want)
				}
			}
			if got := describe(p.Instances()); got != tt.want {
				t.Errorf("instances: got %q; want %q", got, tt.want)
			}
			if p.Len() != len(p.Instances()) {
				t.Errorf("Len: got %d; want %d", p.Len(), len(p.Instances()))
			}
		})
	}
}

func TestProjectionCorrectionsCounted(t *testing.T) {
	t.Parallel()
	p := NewProjection(ProjectionConfig{})
	p.Apply(loaded("n1", "a", 1, 1000), t0)
	p.Apply(connect("n1", "a", "1", 2), t0)
	p.Apply(heartbeat("n1", 3, 100, status("a", 1)), t0)
	p.Apply(heartbeat("n1", 4, 100, status("a", 3)), t0)

	st := p.Stats()
	if st.Corrections != 1 || st.Applied != 4 {
		t.Errorf("stats: got %+v; want 1 correction, 4 applied", st)
	}
}

// TestProjectionIdleClock checks when an instance becomes due.
func TestProjectionIdleClock(t *testing.T) {
	t.Parallel()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name   string
		steps  []step
		notDue time.Time // Due must not list the instance here
		due    time.Time // and must list it here
	}{{
		name: "idle from the last disconnect",
		steps: []step{
			{heartbeat("n1", 1, 100), 0, Applied},
			{loaded("n1", "a", 2, 1000), 0, Applied},
			{connect("n1", "a", "1", 3), 0, Applied},
			{disconnect("n1", "a", "1", 4), 500 * time.Millisecond, Applied},
		},
		notDue: ms(1499),
		due:    ms(1500),
	}, {
		name: "lingering stream keeps it busy",
		steps: []step{
			{heartbeat("n1", 1, 100), 0, Applied},
			{loaded("n1", "a", 2, 1000), 0, Applied},
			{connect("n1", "a", "1", 3), 0, Applied},
			{connect("n1", "a", "2", 4), 0, Applied},
			{disconnect("n1", "a", "1", 5), 0, Applied},
		},
		notDue: ms(60_000),
	}, {
		name: "nothing is due before the node's first heartbeat",
		steps: []step{
			{loaded("n1", "a", 2, 1000), 0, Applied},
		},
		notDue: ms(60_000),
	}, {
		name: "idle since the first heartbeat after a restart",
		steps: []step{
			// The monitor starts at t0+5s; the heartbeat is all it knows.
			{heartbeat("n1", 50, 100, status("a", 0)), 5 * time.Second, Applied},
		},
		notDue: ms(5999),
		due:    ms(6000),
	}, {
		name: "heartbeat with no change keeps the clock",
		steps: []step{
			{heartbeat("n1", 1, 100, status("a", 0)), 0, Applied},
			{heartbeat("n1", 2, 100, status("a", 0)), 900 * time.Millisecond, Applied},
		},
		notDue: ms(999),
		due:    ms(1000),
	}, {
		name: "a disconnect with no stream to end restarts the clock",
		steps: []step{
			{heartbeat("n1", 1, 100, status("a", 0)), 0, Applied},
			{disconnect("n1", "a", "1", 2), 800 * time.Millisecond, Applied},
		},
		notDue: ms(1799),
		due:    ms(1800),
	}, {
		name: "timeout 0 means never",
		steps: []step{
			{heartbeat("n1", 1, 100), 0, Applied},
			{loaded("n1", "a", 2, 0), 0, Applied},
		},
		notDue: ms(3_600_000),
	}, {
		name: "unknown timeout takes the default",
		steps: []step{
			{heartbeat("n1", 1, 100), 0, Applied},
			{connect("n1", "a", "1", 2), 0, Applied},
			{disconnect("n1", "a", "1", 3), 0, Applied},
		},
		notDue: ms(2999),
		due:    ms(3000),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewProjection(ProjectionConfig{DefaultIdle: 3 * time.Second})
			for i, s := range tt.steps {
				if got := p.Apply(s.ev, t0.Add(s.at)); got != s.want {
					t.Fatalf("step %d: got %v; want %v", i, got, s.want)
				}
			}
			if got := describe(p.Due(tt.notDue)); got != "" {
				t.Errorf("Due at %v: got %q; want nothing", tt.notDue.Sub(t0), got)
			}
			if tt.due.IsZero() {
				return
			}
			if got := describe(p.Due(tt.due)); got != "n1/a=0" {
				t.Errorf("Due at %v: got %q; want n1/a=0", tt.due.Sub(t0), got)
			}
		})
	}
}

func TestProjectionResync(t *testing.T) {
	t.Parallel()
	p := NewProjection(ProjectionConfig{})
	p.Apply(heartbeat("n1", 1, 100, status("a", 0)), t0)

	// The node refused: two streams are open that no event told of.
	if !p.Resync("n1", "a", 2, t0.Add(time.Second)) {
		t.Fatal("Resync: got false for a known instance")
	}
	if got := describe(p.Due(t0.Add(time.Hour))); got != "" {
		t.Errorf("Due after resync: got %q; want nothing", got)
	}
	p.Apply(disconnect("n1", "a", "1", 2), t0.Add(2*time.Second))
	p.Apply(disconnect("n1", "a", "2", 3), t0.Add(3*time.Second))
	if got := describe(p.Due(t0.Add(3999 * time.Millisecond))); got != "" {
		t.Errorf("Due before timeout: got %q; want nothing", got)
	}
	if got := describe(p.Due(t0.Add(4 * time.Second))); got != "n1/a=0" {
		t.Errorf("Due after timeout: got %q; want n1/a=0", got)
	}
	if p.Resync("n1", "zz", 1, t0) {
		t.Error("Resync: got true for an unknown instance")
	}

	p.MarkUnloaded("n1", "a", t0.Add(5*time.Second))
	if got := p.Apply(unloaded("n1", "a", 4), t0.Add(5*time.Second)); got != Applied {
		t.Errorf("unloaded after MarkUnloaded: got %v; want applied", got)
	}
	if got := p.Apply(connect("n1", "a", "3", 5), t0.Add(5*time.Second)); got != Tombstoned {
		t.Errorf("connect after MarkUnloaded: got %v; want tombstoned", got)
	}
}

func TestProjectionNodeExpiry(t *testing.T) {
	t.Parallel()
	p := NewProjection(ProjectionConfig{})
	p.Apply(heartbeat("n1", 1, 100, status("a", 1), status("b", 0)), t0)
	p.Apply(heartbeat("n2", 1, 1000, status("c", 0)), t0)

	// Three intervals of silence are tolerated; more drop the node.
	if d := p.Expire(t0.Add(300 * time.Millisecond)); len(d) != 0 {
		t.Fatalf("Expire at 300ms: got %+v; want no drop", d)
	}
	d := p.Expire(t0.Add(301 * time.Millisecond))
	if len(d) != 1 || d[0].Node != "n1" || d[0].Instances != 2 {
		t.Fatalf("Expire at 301ms: got %+v; want n1 with 2 instances", d)
	}
	if got := describe(p.Instances()); got != "n2/c=0" {
		t.Errorf("after drop: got %q; want n2/c=0", got)
	}

	// A heartbeat keeps n2; n1 rejoins with a new instance.
	p.Apply(heartbeat("n2", 2, 1000, status("c", 0)), t0.Add(2*time.Second))
	p.Apply(heartbeat("n1", 2, 100, status("d", 1)), t0.Add(3*time.Second))
	if d := p.Expire(t0.Add(3 * time.Second)); len(d) != 0 {
		t.Errorf("Expire at 3s: got %+v; want no drop", d)
	}
	if got := describe(p.Instances()); got != "n1/d=1 n2/c=0" {
		t.Errorf("after rejoin: got %q; want n1/d=1 n2/c=0", got)
	}

	// A node that never sends a heartbeat is given the assumed interval.
	p.Apply(connect("n3", "e", "1", 1), t0.Add(3*time.Second))
	if d := p.Expire(t0.Add(3*time.Second + missedBeats*assumedInterval)); len(d) != 2 {
		t.Errorf("late Expire: got %+v; want n1, n2 dropped, n3 kept", d)
	}
	if d := p.Expire(t0.Add(4*time.Second + missedBeats*assumedInterval)); len(d) != 1 ||
		d[0].Node != "n3" {
		t.Errorf("later Expire: got %+v; want n3", d)
	}
	if p.Len() != 0 {
		t.Errorf("Len: got %d; want 0", p.Len())
	}
}

func TestRecentBounds(t *testing.T) {
	t.Parallel()
	r := newRecent(3, time.Minute)
	for i, k := range []string{"a", "b", "c", "d"} {
		r.add(k, t0.Add(time.Duration(i)*time.Second))
	}
	now := t0.Add(4 * time.Second)
	if r.has("a", now) {
		t.Error("a: got remembered; want pushed out by the capacity")
	}
	for _, k := range []string{"b", "c", "d"} {
		if !r.has(k, now) {
			t.Errorf("%s: got forgotten; want remembered", k)
		}
	}
	if r.has("b", t0.Add(61*time.Second)) {
		t.Error("b: got remembered after the window; want forgotten")
	}
	r.prune(t0.Add(time.Hour))
	if r.len() != 0 || len(r.set) != 0 {
		t.Errorf("after prune: got %d entries, %d keys; want 0", r.len(), len(r.set))
	}
}

func TestAfter(t *testing.T) {
	t.Parallel()
	at := func(seq uint64, ms int) pos {
		return pos{seq: seq, ts: t0.Add(time.Duration(ms) * time.Millisecond)}
	}
	tests := []struct {
		name string
		a, b pos
		want bool
	}{
		{"higher seq, same clock", at(2, 0), at(1, 0), true},
		{"lower seq", at(1, 0), at(2, 0), false},
		{"same event", at(2, 5), at(2, 5), false},
		{"higher seq, small clock step back", at(2, 0), at(1, 900), true},
		{"restart: lower seq, much later", at(1, 5000), at(900, 0), true},
		{"old process after restart", at(900, 0), at(1, 5000), false},
	}
	for _, tt := range tests {
		if got := after(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
	}
}
