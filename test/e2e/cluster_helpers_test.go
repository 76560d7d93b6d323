package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
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
	cmd := exec.Command(Binary(t), args...)
	var out, errOut Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running ctl: %v", err)
	}
	return out.String(), errOut.String(), code
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
func (s *Sub) WaitRouted(via *Node) {
	s.t.Helper()
	nc, err := nats.Connect(via.URL)
	if err != nil {
		s.t.Fatalf("probe connection to node %s: %v", via.ID, err)
	}
	defer nc.Close()
	for _, pattern := range strings.Fields(s.subject) {
		subj := probeSubject(pattern)
		body := probeBody(subj)
		var probe struct {
			Payload struct{ Nonce string } `json:"payload"`
		}
		json.Unmarshal(body, &probe)
		WaitFor(s.t, fmt.Sprintf("%s from node %s to reach the sub", subj, via.ID),
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
// it decoded.
func (s *Sub) WaitMsg(mark int, what string, match func(Msg, events.Event) bool) (Msg,
	events.Event) {
	s.t.Helper()
	var found Msg
	var ev events.Event
	WaitFor(s.t, what, natsTimeout, func() bool {
		for _, m := range s.Since(mark) {
			e, err := events.DecodeBody(m.Body)
			if err != nil {
				s.t.Fatalf("%s: undecodable body: %v\n%s", m.Subject, err, m.Body)
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
	var drops []nodeDrop
	for _, m := range dropRE.FindAllStringSubmatch(n.Stderr.String(), -1) {
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
