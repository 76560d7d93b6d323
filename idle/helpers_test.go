package idle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/astrid-os/astrid-node/internal/natstest"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startServer runs an embedded nats-server on a free loopback port.
func startServer(t testing.TB) *server.Server { return natstest.Server(t) }

func dial(t testing.TB, s *server.Server) *nats.Conn { return natstest.Conn(t, s) }

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t testing.TB, wait time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", wait, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// observe lets d pass. It is for asserting that something does NOT
// happen within d, which no condition can signal.
func observe(d time.Duration) { time.Sleep(d) }

// testLogger logs to the test's log until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(b[:len(b)-1]))
	}
	return len(b), nil
}

// startMonitor runs a Monitor until the returned stop is called (or the
// test ends) and waits until it is ready.
func startMonitor(t testing.TB, cfg Config) (m *Monitor, stop func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("monitor not ready after 10s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: got %v; want nil on cancel", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return 10s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return m, stop
}

// testNode plays a node over NATS with the node's real protocol: it
// publishes the node's events through events.Publisher and answers the
// control service's unload requests as the node does (IfIdle refused
// while streams are open, with the node's count). It has no capsules; the
// stream counts are what the test says they are.
type testNode struct {
	t   testing.TB
	id  string
	nc  *nats.Conn
	pub *events.Publisher

	mu        sync.Mutex
	instances map[string]*testInstance // guarded by mu
	requests  []unloadCall             // guarded by mu
	silent    bool                     // guarded by mu; take requests, never answer
	nextSID   int32                    // guarded by mu
}

type testInstance struct {
	capsule   string
	streams   int
	timeoutMS int64
}

type unloadCall struct {
	req      control.UnloadRequest
	at       time.Time
	answered bool
	reply    control.Reply
}

func newTestNode(t testing.TB, s *server.Server, id string) *testNode {
	t.Helper()
	nc := dial(t, s)
	n := &testNode{
		t: t, id: id, nc: nc,
		pub:       events.NewPublisher(nc, id, slog.New(slog.DiscardHandler)),
		instances: make(map[string]*testInstance),
	}
	sub, err := nc.Subscribe(control.Subject(id, control.VerbUnload), n.serveUnload)
	if err != nil {
		t.Fatalf("subscribing the unload endpoint: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return n
}

// serveUnload answers as the node's control service does: a Reply body,
// with the micro error headers on a refusal.
func (n *testNode) serveUnload(m *nats.Msg) {
	var req control.UnloadRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		n.t.Errorf("node %s: undecodable unload request %q: %v", n.id, m.Data, err)
		return
	}

	n.mu.Lock()
	call := unloadCall{req: req, at: time.Now()}
	if n.silent {
		n.requests = append(n.requests, call)
		n.mu.Unlock()
		return
	}
	rep := control.Reply{Node: n.id, Instance: req.Instance}
	in := n.instances[req.Instance]
	switch {
	case in == nil:
		rep.Error = "no such instance"
	case req.IfIdle && in.streams > 0:
		rep.Error = "instance has open streams"
		rep.Streams = in.streams
	default:
		rep.OK = true
		delete(n.instances, req.Instance)
		if err := n.pub.Unloaded(in.capsule, req.Instance, req.Reason, 0); err != nil {
			n.t.Errorf("publishing unloaded: %v", err)
		}
	}
	call.answered, call.reply = true, rep
	n.requests = append(n.requests, call)
	n.mu.Unlock()

	data, _ := json.Marshal(rep)
	reply := &nats.Msg{Subject: m.Reply, Data: data, Header: nats.Header{}}
	if !rep.OK {
		reply.Header.Set("Nats-Service-Error-Code", "409")
		reply.Header.Set("Nats-Service-Error", rep.Error)
	}
	if err := n.nc.PublishMsg(reply); err != nil {
		n.t.Errorf("replying: %v", err)
	}
}

func (n *testNode) setSilent(silent bool) {
	n.mu.Lock()
	n.silent = silent
	n.mu.Unlock()
}

func (n *testNode) calls() []unloadCall {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]unloadCall(nil), n.requests...)
}

func (n *testNode) callsFor(instance string) []unloadCall {
	var out []unloadCall
	for _, c := range n.calls() {
		if c.req.Instance == instance {
			out = append(out, c)
		}
	}
	return out
}

// load publishes capsule.v1.loaded for a new instance.
func (n *testNode) load(capsule string, timeout time.Duration) string {
	id := uuid.NewString()
	n.mu.Lock()
	n.instances[id] = &testInstance{capsule: capsule, timeoutMS: timeout.Milliseconds()}
	n.mu.Unlock()
	if err := n.pub.Loaded(capsule, id, events.LoadStart, timeout); err != nil {
		n.t.Fatalf("publishing loaded: %v", err)
	}
	return id
}

// open opens a stream and, unless quietly, publishes client.v1.connected;
// a quiet open is a connect event lost on the way.
func (n *testNode) open(instance string, quietly bool) int32 {
	n.mu.Lock()
	in := n.instances[instance]
	in.streams++
	n.nextSID++
	sid := n.nextSID
	n.mu.Unlock()
	if !quietly {
		if err := n.pub.Connected(in.capsule, instance, sid); err != nil {
			n.t.Fatalf("publishing connected: %v", err)
		}
	}
	return sid
}

func (n *testNode) close(instance string, stream int32) {
	n.mu.Lock()
	in := n.instances[instance]
	in.streams--
	n.mu.Unlock()
	err := n.pub.Disconnected(in.capsule, instance, stream, events.ReasonPeerClosed)
	if err != nil {
		n.t.Fatalf("publishing disconnect: %v", err)
	}
}

// beat publishes a heartbeat with the current counts. The snapshot and
// the publish happen under one lock, so the heartbeat counts every event
// published before it.
func (n *testNode) beat(interval time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := []events.InstanceStatus{}
	for id, in := range n.instances {
		st = append(st, events.InstanceStatus{Capsule: in.capsule, Instance: id,
			Streams: in.streams, IdleTimeoutMS: in.timeoutMS})
	}
	if err := n.pub.Heartbeat(interval, st); err != nil {
		n.t.Errorf("publishing heartbeat: %v", err)
	}
}

// beatEvery publishes heartbeats until the returned stop is called (or
// the test ends).
func (n *testNode) beatEvery(interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			n.beat(interval)
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	n.t.Cleanup(stop)
	return stop
}

// streamsOf returns the monitor's count for an instance, or an error if
// it does not know it.
func streamsOf(m *Monitor, instance string) (InstanceState, error) {
	for _, st := range m.Snapshot() {
		if st.Instance == instance {
			return st, nil
		}
	}
	return InstanceState{}, fmt.Errorf("monitor does not know instance %s", instance)
}

func wantStreams(m *Monitor, instance string, want int) func() error {
	return func() error {
		st, err := streamsOf(m, instance)
		if err != nil {
			return err
		}
		if st.Streams != want {
			return fmt.Errorf("instance %s: got %d streams; want %d", instance, st.Streams, want)
		}
		return nil
	}
}

func wantGone(m *Monitor, instance string) func() error {
	return func() error {
		if _, err := streamsOf(m, instance); err == nil {
			return errors.New("monitor still lists instance " + instance)
		}
		return nil
	}
}
