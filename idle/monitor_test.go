package idle

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
)

const wait = 10 * time.Second // deadline of eventual conditions

func TestMonitorUnloadsAfterLastDisconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	node := newTestNode(t, s, "node-a")
	m, _ := startMonitor(t, Config{Conn: dial(t, s)})
	node.beatEvery(50 * time.Millisecond)

	const timeout = 300 * time.Millisecond
	inst := node.load("echo", timeout)
	s1 := node.open(inst, false)
	s2 := node.open(inst, false)
	eventually(t, wait, wantStreams(m, inst, 2))

	// One stream lingers: the instance is never idle.
	node.close(inst, s1)
	eventually(t, wait, wantStreams(m, inst, 1))
	observe(2 * timeout)
	if c := node.calls(); len(c) != 0 {
		t.Fatalf("with a stream open: got %d unload requests; want 0", len(c))
	}

	lastClose := time.Now()
	node.close(inst, s2)
	eventually(t, wait, func() error {
		if len(node.calls()) == 0 {
			return errors.New("no unload request yet")
		}
		return nil
	})
	eventually(t, wait, wantGone(m, inst))

	calls := node.calls()
	if len(calls) != 1 {
		t.Fatalf("got %d unload requests; want 1", len(calls))
	}
	c := calls[0]
	if c.req.Instance != inst || c.req.Capsule != "echo" || c.req.Reason != events.UnloadIdle ||
		!c.req.IfIdle {
		t.Errorf("request: got %+v; want capsule echo, instance %s, reason idle, if_idle",
			c.req, inst)
	}
	if !c.reply.OK {
		t.Errorf("node refused: %+v", c.reply)
	}
	if idle := c.at.Sub(lastClose); idle < timeout {
		t.Errorf("request came %v after the last disconnect; want >= %v", idle, timeout)
	}
}

func TestMonitorResyncsOnRefusal(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	node := newTestNode(t, s, "node-a")
	m, _ := startMonitor(t, Config{Conn: dial(t, s)})

	// One heartbeat with a long interval: the node is heard and stays so,
	// and no later heartbeat repairs the count: only the refusal can.
	const timeout = 200 * time.Millisecond
	inst := node.load("echo", timeout)
	node.beat(time.Minute)

	// The connect event of this stream is lost: the monitor counts 0.
	sid := node.open(inst, true)
	eventually(t, wait, func() error {
		if len(node.callsFor(inst)) == 0 {
			return errors.New("no unload request yet")
		}
		return nil
	})
	eventually(t, wait, wantStreams(m, inst, 1))
	st, _ := streamsOf(m, inst)
	if !st.IdleSince.IsZero() {
		t.Errorf("after refusal: idle since %v; want not idle", st.IdleSince)
	}
	if c := node.callsFor(inst)[0]; c.reply.OK || c.reply.Streams != 1 {
		t.Errorf("first reply: got %+v; want refused with 1 stream", c.reply)
	}

	closed := time.Now()
	node.close(inst, sid)
	eventually(t, wait, wantGone(m, inst))
	calls := node.callsFor(inst)
	if len(calls) != 2 || !calls[1].reply.OK {
		t.Fatalf("got requests %+v; want a refusal, then an accepted unload", calls)
	}
	if idle := calls[1].at.Sub(closed); idle < timeout {
		t.Errorf("second request %v after the disconnect; want >= %v", idle, timeout)
	}
}

func TestMonitorBacksOffWithoutReply(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	node := newTestNode(t, s, "node-a")
	const reqTimeout = 100 * time.Millisecond
	m, _ := startMonitor(t, Config{Conn: dial(t, s), RequestTimeout: reqTimeout,
		Tick: 10 * time.Millisecond})
	node.setSilent(true)
	node.beatEvery(50 * time.Millisecond)
	inst := node.load("echo", 50*time.Millisecond)

	// Timeouts and backoff (100ms, 200ms, 400ms, ...) space the requests;
	// a tight loop at the 10ms tick would send dozens.
	eventually(t, wait, func() error {
		if n := len(node.callsFor(inst)); n < 3 {
			return fmt.Errorf("%d requests; want 3", n)
		}
		return nil
	})
	// The gaps are measured where the node receives, so allow for the
	// delivery jitter; a retry without backoff would come after 100ms.
	const jitter = 20 * time.Millisecond
	calls := node.callsFor(inst)
	for i := 1; i < len(calls); i++ {
		gap := calls[i].at.Sub(calls[i-1].at)
		want := reqTimeout + time.Duration(1<<(i-1))*reqTimeout - jitter
		if gap < want {
			t.Errorf("gap before request %d: got %v; want >= %v", i, gap, want)
		}
	}

	node.setSilent(false)
	eventually(t, wait, wantGone(m, inst))
}

// TestMonitorRestart kills a monitor while a client is connected and
// starts another on the same server: the new one learns the counts from
// heartbeats alone, unloads nothing with a stream open, and still unloads
// the idle instance.
func TestMonitorRestart(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	node := newTestNode(t, s, "node-a")
	node.beatEvery(50 * time.Millisecond)

	// The first monitor learns the instances from their events.
	first, stop := startMonitor(t, Config{Conn: dial(t, s)})
	const busyTimeout, idleTimeout = 200 * time.Millisecond, 400 * time.Millisecond
	busy := node.load("echo", busyTimeout)
	node.open(busy, false)
	idle := node.load("clock", idleTimeout)
	eventually(t, wait, wantStreams(first, busy, 1))
	eventually(t, wait, wantStreams(first, idle, 0))
	stop()

	restarted := time.Now()
	second, _ := startMonitor(t, Config{Conn: dial(t, s)})
	eventually(t, wait, func() error {
		if len(node.callsFor(idle)) == 0 {
			return errors.New("idle instance not unloaded after restart")
		}
		return nil
	})
	if at := node.callsFor(idle)[0].at; at.Sub(restarted) < idleTimeout {
		t.Errorf("idle instance unloaded %v after restart; want >= %v",
			at.Sub(restarted), idleTimeout)
	}
	if err := wantStreams(second, busy, 1)(); err != nil {
		t.Error(err)
	}

	observe(3 * busyTimeout)
	if c := node.callsFor(busy); len(c) != 0 {
		t.Errorf("instance with a stream open: got %d unload requests; want 0", len(c))
	}
}

// TestMonitorWaitsForFirstHeartbeat starts a monitor that missed a
// capsule's connects: a disconnect makes it count 0 although a stream is
// open. Until the node's heartbeat says so, it must not ask.
func TestMonitorWaitsForFirstHeartbeat(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	node := newTestNode(t, s, "node-a")

	const timeout = 100 * time.Millisecond
	inst := node.load("echo", timeout)
	s1 := node.open(inst, false)
	node.open(inst, false)

	m, _ := startMonitor(t, Config{Conn: dial(t, s)})
	node.close(inst, s1)
	eventually(t, wait, wantStreams(m, inst, 0))
	observe(3 * timeout)
	if c := node.calls(); len(c) != 0 {
		t.Fatalf("before any heartbeat: got %d unload requests; want 0", len(c))
	}

	node.beat(time.Minute)
	eventually(t, wait, wantStreams(m, inst, 1))
	observe(3 * timeout)
	if c := node.calls(); len(c) != 0 {
		t.Errorf("after the heartbeat: got %d unload requests; want 0", len(c))
	}
}

func TestMonitorDropsSilentNode(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	node := newTestNode(t, s, "node-a")
	m, _ := startMonitor(t, Config{Conn: dial(t, s)})

	const interval = 50 * time.Millisecond
	inst := node.load("echo", time.Hour)
	stopBeats := node.beatEvery(interval)
	eventually(t, wait, wantStreams(m, inst, 0))

	stopBeats()
	silent := time.Now()
	eventually(t, wait, wantGone(m, inst))
	if d := time.Since(silent); d < 2*interval {
		t.Errorf("node dropped %v after its last heartbeat; want >= %v", d, 2*interval)
	}

	// The node comes back with a new instance and rejoins.
	again := node.load("echo", time.Hour)
	node.beatEvery(interval)
	eventually(t, wait, wantStreams(m, again, 0))
}

func TestMonitorSkipsMalformedEvents(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	nc := dial(t, s)
	node := newTestNode(t, s, "node-a")
	m, _ := startMonitor(t, Config{Conn: dial(t, s)})

	for _, body := range []string{
		"", "{", `{"topic":"client.v1.connected"}`, "\x00\xff",
		`{"topic":"node.v1.heartbeat","payload":{"type":"heartbeat"},"timestamp":"x"}`,
	} {
		if err := nc.Publish(events.SubjectConnected, []byte(body)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(events.SubjectHeartbeat, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	inst := node.load("echo", time.Hour)
	node.open(inst, false)
	eventually(t, wait, wantStreams(m, inst, 1))
}

func TestMonitorConfig(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Error("New without Conn: got nil error")
	}
	s := startServer(t)
	nc := dial(t, s)
	if _, err := New(Config{Conn: nc, Node: "a.b"}); err == nil {
		t.Error("New with node a.b: got nil error")
	}
	if _, err := New(Config{Conn: nc, Tick: -1}); err == nil {
		t.Error("New with negative tick: got nil error")
	}

	m, stop := startMonitor(t, Config{Conn: nc})
	if err := m.Run(context.Background()); err == nil {
		t.Error("second Run: got nil error")
	}
	stop()
}

// TestMonitorWatchesOneNode runs the monitor as a node runs it, limited to
// its own node: another node's idle instance is not its business.
func TestMonitorWatchesOneNode(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	own := newTestNode(t, s, "node-a")
	other := newTestNode(t, s, "node-b")
	m, _ := startMonitor(t, Config{Conn: dial(t, s), Node: "node-a"})

	const timeout = 100 * time.Millisecond
	mine := own.load("echo", timeout)
	theirs := other.load("echo", timeout)
	own.beatEvery(50 * time.Millisecond)
	other.beatEvery(50 * time.Millisecond)

	eventually(t, wait, func() error {
		if len(own.callsFor(mine)) == 0 {
			return errors.New("no unload request yet")
		}
		return nil
	})
	eventually(t, wait, wantGone(m, mine))
	if c := own.callsFor(mine); len(c) != 1 || !c[0].reply.OK {
		t.Errorf("own node: got requests %+v; want one accepted", c)
	}
	observe(3 * timeout)
	if c := other.calls(); len(c) != 0 {
		t.Errorf("other node: got %d unload requests; want 0", len(c))
	}
	if _, err := streamsOf(m, theirs); err == nil {
		t.Errorf("monitor of node-a lists node-b's instance %s", theirs)
	}
}

func TestMonitorConnectionClosed(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	// Closed before Run: Run fails at once.
	closed := dial(t, s)
	closed.Close()
	m, err := New(Config{Conn: closed})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(t.Context()); err == nil {
		t.Error("Run on a closed connection: got nil error")
	}

	// Closed under a running monitor: Run returns an error, not nil.
	nc := dial(t, s)
	m, err = New(Config{Conn: nc, Logger: testLogger(t), Tick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(t.Context()) }()
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	}
	nc.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Run after the connection closed: got nil error")
		}
	case <-time.After(wait):
		t.Fatal("Run still running after the connection closed")
	}
}
