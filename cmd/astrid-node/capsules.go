package main

import (
	"context"

	"github.com/astrid-os/astrid-node/node"
)

// startCapsules plugs the runtime, the socket gateway, the control service
// and the idle monitor into the running node n, as opts asks. The stop
// function it returns ends them (closing their streams, publishing their
// last events) before the node itself shuts down.
//
// In this build it loads nothing: the runtime and the gateway are not
// wired in yet, so the node runs NATS and heartbeats only, and the
// capsule, idle and stream flags are validated but have no effect.
func startCapsules(ctx context.Context, n *node.Node,
	opts runOptions) (stop func(context.Context) error, err error) {
	opts.node.Logger.Warn("capsules are not loaded in this build: the runtime is not wired in",
		"capsules", opts.capsules)
	return func(context.Context) error { return nil }, nil
}
