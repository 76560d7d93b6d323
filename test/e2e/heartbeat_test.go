package e2e

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/node"
	"github.com/astrid-os/astrid-node/schemas"
)

// TestHeartbeatWithNatsCLI watches a node's heartbeats with the real nats
// CLI, then stops the node with SIGTERM.
func TestHeartbeatWithNatsCLI(t *testing.T) {
	NatsCLI(t)
	n := StartNode(t, "--heartbeat", "200ms")

	readyPath := filepath.Join(n.RunDir(), node.ReadyFile)
	var ready node.Ready
	data, err := os.ReadFile(readyPath)
	if err != nil || json.Unmarshal(data, &ready) != nil {
		t.Fatalf("ready file %q: %v", data, err)
	}
	if ready.Node != n.ID || ready.NATSURL != n.URL || ready.PID != n.Cmd.Process.Pid {
		t.Errorf("ready file %+v; want node %s url %s pid %d", ready, n.ID, n.URL,
			n.Cmd.Process.Pid)
	}

	var lastSeq uint64
	for i, m := range n.NatsSub(events.SubjectHeartbeat, 2) {
		if m.Subject != events.SubjectHeartbeat {
			t.Errorf("message %d on %q; want %s", i, m.Subject, events.SubjectHeartbeat)
		}
		if got := m.Header[events.HeaderNode]; got != n.ID {
			t.Errorf("message %d header %s = %q; want %q", i, events.HeaderNode, got, n.ID)
		}
		if m.Header[events.HeaderMsgID] == "" {
			t.Errorf("message %d has no %s header", i, events.HeaderMsgID)
		}
		if err := schemas.Validate(schemas.IPCMessage, m.Body); err != nil {
			t.Fatalf("message %d does not validate: %v\n%s", i, err, m.Body)
		}
		ev, err := events.DecodeBody(m.Body)
		if err != nil {
			t.Fatal(err)
		}
		hb := ev.Payload.(events.Heartbeat)
		if hb.Node != n.ID || hb.IntervalMS != 200 {
			t.Errorf("heartbeat %+v; want node %s every 200ms", hb, n.ID)
		}
		if ev.Seq <= lastSeq {
			t.Errorf("seq %d after %d; want increasing", ev.Seq, lastSeq)
		}
		lastSeq = ev.Seq
	}

	if code := n.Stop(); code != 0 {
		t.Fatalf("exit %d after SIGTERM; want 0; stderr:\n%s", code, n.Stderr)
	}
	if _, err := os.Stat(readyPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file after exit: %v; want it removed", err)
	}
	if out := n.Stdout.String(); out != "" {
		t.Errorf("stdout after the ready line: %q; want nothing", out)
	}
}

func TestParseSub(t *testing.T) {
	out := "[#1] Received on \"a.b\"\nNats-Msg-Id: x\nAstrid-Node: n\n\n{\"k\":1}\n\n\n" +
		"[#2] Received on \"a.c\"\n{\"k\":2}\n\n\n"
	msgs := ParseSub(out)
	if len(msgs) != 2 {
		t.Fatalf("parsed %d messages; want 2: %+v", len(msgs), msgs)
	}
	if msgs[0].Subject != "a.b" || msgs[0].Header["Astrid-Node"] != "n" ||
		string(msgs[0].Body) != `{"k":1}` {
		t.Errorf("first = %+v", msgs[0])
	}
	if msgs[1].Subject != "a.c" || len(msgs[1].Header) != 0 || string(msgs[1].Body) != `{"k":2}` {
		t.Errorf("second = %+v", msgs[1])
	}
}

// TestStartSubSeesOneOffEvents checks the harness's live subscription
// with events published once, right after StartSub returns.
func TestStartSubSeesOneOffEvents(t *testing.T) {
	n := StartNode(t, "--heartbeat", "1h")
	sub := n.StartSub("capsule.v1.>")

	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p := events.NewPublisher(nc, "harness", slog.New(slog.DiscardHandler))
	p.Loaded("echo", "i1", events.LoadStart, time.Minute)
	p.Unloaded("echo", "i1", events.UnloadIdle, 0)

	msgs := sub.Wait(2, 10*time.Second)
	if len(msgs) != 2 || msgs[0].Subject != events.SubjectLoaded ||
		msgs[1].Subject != events.SubjectUnloaded {
		t.Fatalf("got %+v; want loaded then unloaded", msgs)
	}
	for _, m := range msgs {
		if err := schemas.Validate(schemas.IPCMessage, m.Body); err != nil {
			t.Errorf("%s: %v", m.Subject, err)
		}
	}
}
