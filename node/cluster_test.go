package node

import (
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
)

func TestClusterOfTwoNodes(t *testing.T) {
	cfgA := testConfig(t)
	cfgA.ClusterListen = "127.0.0.1:0"
	a := startNode(t, cfgA)

	cfgB := testConfig(t)
	cfgB.ClusterListen = "127.0.0.1:0"
	cfgB.Routes = []string{"nats://" + a.Server().ClusterAddr().String()}
	b := startNode(t, cfgB)

	waitFor(t, "route between the nodes", func() bool {
		return a.Server().NumRoutes() > 0 && b.Server().NumRoutes() > 0
	})
	// B's heartbeats cross the route to a subscriber on A once A's
	// interest has reached B; heartbeats repeat, so waiting is enough.
	ch := collect(t, connect(t, a.ClientURL()), events.SubjectHeartbeat)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Node == b.ID() {
				return
			}
		case <-deadline:
			t.Fatalf("no heartbeat from node %s on node %s", b.ID(), a.ID())
		}
	}
}
