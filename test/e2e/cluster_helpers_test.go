package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
)

// Ctl runs `astrid-node ctl --nats-url URL ARGS...` through node n's
// server and returns its stdout, stderr and exit code.
func (n *Node) Ctl(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	args = append([]string{"ctl", "--nats-url", n.URL, "--timeout", "1s"}, args...)
	return Run(t, "", args...)
}

// CtlList runs `astrid-node ctl --json list` through n and returns the
// capsules of every node that answered, by node.
func (n *Node) CtlList(t testing.TB) map[string][]control.InstanceInfo {
	t.Helper()
	out, errOut, code := n.Ctl(t, "--json", "list")
	if code != 0 {
		t.Fatalf("ctl list: exit %d; stderr %s", code, errOut)
	}
	var reps []control.Reply
	if err := json.Unmarshal([]byte(out), &reps); err != nil {
		t.Fatalf("ctl list --json printed %q: %v", out, err)
	}
	byNode := map[string][]control.InstanceInfo{}
	for _, r := range reps {
		byNode[r.Node] = r.List
	}
	return byNode
}

// capsuleOn returns the entry of capsule in a node's list.
func capsuleOn(list []control.InstanceInfo, capsule string) (control.InstanceInfo, bool) {
	for _, in := range list {
		if in.Capsule == capsule {
			return in, true
		}
	}
	return control.InstanceInfo{}, false
}

// WaitRouted returns once a probe published on via's server reaches the
// live subscription s: then the interest of s has crossed the route to
// via, and events via publishes from now on reach s.
func (s *Sub) WaitRouted(t testing.TB, via *Node) {
	t.Helper()
	nc, err := nats.Connect(via.URL)
	if err != nil {
		t.Fatalf("probe connection to node %s: %v", via.ID, err)
	}
	defer nc.Close()
	for _, pattern := range strings.Fields(s.subject) {
		subj := probeSubject(pattern)
		body := probeBody(subj)
		var probe struct {
			Payload struct{ Nonce string } `json:"payload"`
		}
		json.Unmarshal(body, &probe)
		WaitFor(t, fmt.Sprintf("%s from node %s to reach the sub", subj, via.ID),
			natsTimeout, func() bool {
				nc.Publish(subj, body)
				nc.Flush()
				return strings.Contains(s.out.String(), probe.Payload.Nonce)
			})
	}
}

// Mark is a position in a Sub's output: Since returns what came after.
func (s *Sub) Mark() int { return len(s.Msgs()) }

// Since returns the messages after mark.
func (s *Sub) Since(mark int) []Msg {
	msgs := s.Msgs()
	if mark > len(msgs) {
		return nil
	}
	return msgs[mark:]
}

// WaitMsg waits for a message after mark that match accepts and returns
// it decoded. The CLI may be midway through printing the last message, so
// an undecodable last message is left for the next poll.
func (s *Sub) WaitMsg(t testing.TB, mark int, what string,
	match func(Msg, events.Event) bool) (Msg, events.Event) {
	t.Helper()
	var found Msg
	var ev events.Event
	WaitFor(t, what, natsTimeout, func() bool {
		msgs := s.Since(mark)
		for i, m := range msgs {
			e, err := events.DecodeBody(m.Body)
			if err != nil {
				if i == len(msgs)-1 {
					return false
				}
				t.Fatalf("%s: undecodable body: %v\n%s", m.Subject, err, m.Body)
			}
			e.Node = m.Header[events.HeaderNode]
			e.Instance = m.Header[events.HeaderInstance]
			e.Stream = m.Header[events.HeaderStream]
			if match(m, e) {
				found, ev = m, e
				return true
			}
		}
		return false
	})
	return found, ev
}

// heartbeatFrom matches a heartbeat of node.
func heartbeatFrom(node string) func(Msg, events.Event) bool {
	return func(m Msg, e events.Event) bool {
		_, ok := e.Payload.(events.Heartbeat)
		return ok && e.Node == node
	}
}

// dropRE matches the idle monitor's log line for a node it dropped for
// silence. The monitor inside a node logs with the node's own `node`
// attribute first, then the dropped node's.
var dropRE = regexp.MustCompile(
	`msg="node silent; dropping it and its instances".* node=(\S+) instances=(\d+) ` +
		`silence=(\S+)`)

// nodeDrop is one drop the idle monitor logged.
type nodeDrop struct {
	node      string
	instances string
	silence   time.Duration
}

// NodeDrops parses the drops in a node's log.
func (n *Node) NodeDrops(t testing.TB) []nodeDrop {
	t.Helper()
	return parseDrops(t, n.Stderr.String())
}

func parseDrops(t testing.TB, log string) []nodeDrop {
	t.Helper()
	var drops []nodeDrop
	for _, m := range dropRE.FindAllStringSubmatch(log, -1) {
		d, err := time.ParseDuration(m[3])
		if err != nil {
			t.Fatalf("drop log line with silence %q: %v", m[3], err)
		}
		drops = append(drops, nodeDrop{node: m[1], instances: m[2], silence: d})
	}
	return drops
}

// wireHeaderSize is the size of a message's headers on the NATS wire:
// the NATS/1.0 status line, one "Key: value" line each, a blank line.
func wireHeaderSize(h map[string]string) int {
	size := len("NATS/1.0\r\n\r\n")
	for k, v := range h {
		size += len(k) + len(": ") + len(v) + len("\r\n")
	}
	return size
}

// StartIdle runs a standalone `astrid-node idle --nats-url URL args...`
// through node n's server and returns its log once the monitor runs. It
// is stopped with SIGTERM when the test ends.
func (n *Node) StartIdle(t testing.TB, args ...string) *Buffer {
	t.Helper()
	cmd := exec.Command(Binary(t), append([]string{"idle", "--nats-url", n.URL}, args...)...)
	log := &Buffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting astrid-node idle: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			<-done
		}
	})
	WaitFor(t, "the standalone idle monitor to run", natsTimeout, func() bool {
		select {
		case <-done:
			t.Fatalf("astrid-node idle exited: %s", log)
		default:
		}
		return strings.Contains(log.String(), "idle monitor running")
	})
	return log
}
