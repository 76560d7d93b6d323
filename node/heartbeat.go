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
		if n.cfg.Instances != nil {
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
