package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/astrid-os/astrid-node/events"
)

// heartbeatNodes returns the nodes whose heartbeats a `nats sub` on n
// printed among count messages.
func heartbeatNodes(n *Node, count int) map[string]bool {
	seen := map[string]bool{}
	for _, m := range n.NatsSub(events.SubjectHeartbeat, count) {
		seen[m.Header[events.HeaderNode]] = true
	}
	return seen
}

// TestClusterFlags joins two real nodes with --cluster-listen and --routes
// and watches the second node's heartbeats through the first one's
// server.
func TestClusterFlags(t *testing.T) {
	NatsCLI(t)
	clusterA := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	a := StartNode(t, "--heartbeat", "100ms", "--cluster-listen", clusterA)
	b := StartNode(t, "--heartbeat", "100ms", "--cluster-listen", "127.0.0.1:0",
		"--routes", "nats://"+clusterA)

	// Both nodes beat every 100ms; 10 messages take half a second, far
	// longer than a route and its interest need to form.
	if seen := heartbeatNodes(a, 10); !seen[b.ID] || !seen[a.ID] {
		t.Errorf("heartbeats on node A's server came from %v; want A %s and B %s",
			seen, a.ID, b.ID)
	}
	for _, n := range []*Node{b, a} {
		if code := n.Stop(); code != 0 {
			t.Errorf("node %s exit %d; want 0", n.ID, code)
		}
	}
}

// TestExternalNATSFlag runs a node on another node's server with
// --nats-url: it starts no server and its heartbeats arrive there.
func TestExternalNATSFlag(t *testing.T) {
	NatsCLI(t)
	a := StartNode(t, "--heartbeat", "1h")
	b := StartNode(t, "--heartbeat", "100ms", "--nats-url", a.URL)

	if b.URL != a.URL {
		t.Errorf("node B announces %s; want A's server %s", b.URL, a.URL)
	}
	if seen := heartbeatNodes(a, 2); !seen[b.ID] {
		t.Errorf("heartbeats came from %v; want node B %s", seen, b.ID)
	}
	if code := b.Stop(); code != 0 {
		t.Errorf("node B exit %d; want 0", code)
	}
}

// TestClusterNameMismatch: nodes with different --cluster-name do not
// join, and the node refusing the route says why at error level.
func TestClusterNameMismatch(t *testing.T) {
	NatsCLI(t)
	clusterA := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	a := StartNode(t, "--heartbeat", "100ms", "--cluster-listen", clusterA,
		"--cluster-name", "alpha")
	b := StartNode(t, "--heartbeat", "100ms", "--cluster-listen", "127.0.0.1:0",
		"--routes", "nats://"+clusterA, "--cluster-name", "beta")

	WaitFor(t, "node A to refuse node B's route", natsTimeout, func() bool {
		for _, line := range strings.Split(a.Stderr.String(), "\n") {
			if strings.Contains(line, "level=ERROR") &&
				strings.Contains(line, `cluster name \"beta\" does not match \"alpha\"`) {
				return true
			}
		}
		return false
	})
	// B keeps trying; its heartbeats never reach A.
	if seen := heartbeatNodes(a, 10); seen[b.ID] || !seen[a.ID] {
		t.Errorf("heartbeats on node A came from %v; want only A %s", seen, a.ID)
	}
	for _, n := range []*Node{b, a} {
		if code := n.Stop(); code != 0 {
			t.Errorf("node %s exit %d; want 0", n.ID, code)
		}
	}
}
