package node

import (
	"context"
	"time"

	"github.com/astrid-os/astrid-node/events"
)

// heartbeat publishes node.v1.heartbeat at once and then every interval
// until ctx ends. A failed publish is logged by the Publisher; the loop
// goes on, since the next beat carries the full state again.
func (n *Node) heartbeat(ctx context.Context) {
	defer close(n.beatDone)

	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	for {
		var list []events.InstanceStatus
		if f := n.instances.Load(); f != nil {
			list = (*f)()
		} else if n.cfg.Instances != nil {
			list = n.cfg.Instances()
		}
		_ = n.pub.Heartbeat(n.cfg.Heartbeat, list)

		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SetInstances replaces the heartbeat's source of instances: the capsule
// host plugs in here once it is up, after the node started.
func (n *Node) SetInstances(f func() []events.InstanceStatus) { n.instances.Store(&f) }
