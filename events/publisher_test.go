package events

import (
	"github.com/astrid-os/astrid-node/internal/natstest"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runServer starts a real nats-server on a free port and returns a
// publishing and a subscribing connection to it.
func runServer(t *testing.T) (pub, sub *nats.Conn) {
	t.Helper()
	s := natstest.Server(t)
	return natstest.Conn(t, s), natstest.Conn(t, s)
}

func receive(t *testing.T, sub *nats.Subscription) *nats.Msg {
	t.Helper()
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no message: %v", err)
	}
	return m
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestPublisherHeaders(t *testing.T) {
	pc, sc := runServer(t)
	sub, err := sc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	sc.Flush()
	p := NewPublisher(pc, "node-1", quiet())

	cases := []struct {
		name                      string
		publish                   func() error
		capsule, instance, stream string
	}{
		{"connected", func() error { return p.Connected("echo", "i1", 7) }, "echo", "i1", "7"},
		{"disconnect", func() error {
			return p.Disconnected("echo", "i1", 7, ReasonPeerClosed)
		}, "echo", "i1", "7"},
		{"loaded", func() error { return p.Loaded("echo", "i1", LoadStart, time.Minute) },
			"echo", "i1", ""},
		{"unloaded", func() error { return p.Unloaded("echo", "i1", UnloadIdle, 0) },
			"echo", "i1", ""},
		{"heartbeat", func() error { return p.Heartbeat(time.Second, nil) }, "", "", ""},
	}
	ids := map[string]bool{}
	for _, tc := range cases {
		if err := tc.publish(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		m := receive(t, sub)
		h := m.Header
		id := h.Get(HeaderMsgID)
		if id == "" || ids[id] {
			t.Errorf("%s: %s %q; want a fresh id", tc.name, HeaderMsgID, id)
		}
		ids[id] = true
		checks := []struct{ key, want string }{
			{HeaderNode, "node-1"}, {HeaderCapsule, tc.capsule},
			{HeaderInstance, tc.instance}, {HeaderStream, tc.stream},
		}
		for _, c := range checks {
			_, present := h[c.key]
			if got := h.Get(c.key); got != c.want || (c.want == "" && present) {
				t.Errorf("%s: header %s = %q (present %v); want %q", tc.name, c.key, got,
					present, c.want)
			}
		}
		ev, err := Decode(m)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if ev.Node != "node-1" || ev.MsgID != id {
			t.Errorf("%s: decoded node %q id %q", tc.name, ev.Node, ev.MsgID)
		}
	}
}

func TestHeartbeatPayload(t *testing.T) {
	pc, sc := runServer(t)
	sub, _ := sc.SubscribeSync(SubjectHeartbeat)
	sc.Flush()
	p := NewPublisher(pc, "node-1", quiet())

	p.Heartbeat(1500*time.Millisecond, nil)
	ev, err := Decode(receive(t, sub))
	if err != nil {
		t.Fatal(err)
	}
	hb := ev.Payload.(Heartbeat)
	if hb.Node != "node-1" || hb.IntervalMS != 1500 || hb.Instances == nil ||
		len(hb.Instances) != 0 || ev.SourceID != "node-1" {
		t.Errorf("heartbeat %+v from %q; want node-1, 1500ms, empty list", hb, ev.SourceID)
	}
}

// TestSeqUnderConcurrentPublishers checks that seq starts at 1, has no
// gaps or repeats, and that a subscriber sees events in seq order.
func TestSeqUnderConcurrentPublishers(t *testing.T) {
	pc, sc := runServer(t)
	sub, err := sc.SubscribeSync("client.v1.>")
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	sc.Flush()
	p := NewPublisher(pc, "node-1", quiet())

	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				if err := p.Connected("echo", "i1", int32(w)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	for want := uint64(1); want <= workers*each; want++ {
		ev, err := Decode(receive(t, sub))
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != want {
			t.Fatalf("seq %d; want %d", ev.Seq, want)
		}
	}
}

func TestSubscribeSkipsMalformed(t *testing.T) {
	pc, sc := runServer(t)
	got := make(chan Event, 10)
	sub, err := Subscribe(sc, "client.v1.>", quiet(), func(ev Event) { got <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	sc.Flush()

	pc.Publish(SubjectConnected, []byte("not json"))
	pc.Publish(SubjectConnected, []byte(validBody)) // topic differs from subject
	NewPublisher(pc, "node-1", quiet()).Disconnected("echo", "i1", 1, ReasonIOError)

	select {
	case ev := <-got:
		if ev.Topic != SubjectDisconnect {
			t.Errorf("first delivered event %s; want the valid disconnect", ev.Topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("valid event not delivered after malformed ones")
	}
	select {
	case ev := <-got:
		t.Errorf("unexpected extra event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestPublishOnClosedConnection(t *testing.T) {
	pc, _ := runServer(t)
	p := NewPublisher(pc, "node-1", quiet())
	pc.Close()
	if err := p.Heartbeat(time.Second, nil); err == nil {
		t.Error("publish on a closed connection succeeded")
	}
}
