package main

import (
	"context"

	"github.com/astrid-os/astrid-node/node"
)

// startCapsules plugs the runtime, the socket gateway, the control service
// and the idle monitor into the running node n, as opts asks. The stop
// function it returns ends them (closing their streams, publishing their
// last events) before the node itself shuts down.
func startCapsules(ctx context.Context, n *node.Node,
	opts runOptions) (stop func(context.Context) error, err error) {
	h, err := node.StartHost(ctx, n, node.HostConfig{
		CapsulesDir:  opts.capsules,
		IdleTimeout:  opts.idleTimeout,
		MaxStreams:   opts.maxStreams,
		Grace:        opts.grace,
		ExitWhenIdle: opts.exitWhenIdle,
		IdleMonitor:  opts.idleMonitor,
		CacheDir:     opts.cacheDir,
	})
	if err != nil {
		return nil, err
	}

	// --exit-when-idle: the host has published the unloads; end the node
	// as a signal would, so the usual shutdown path runs.
	go func() {
		select {
		case <-h.Idle():
			opts.requestExit("idle for " + opts.exitWhenIdle.String())
		case <-ctx.Done():
		}
	}()
	return h.Close, nil
}
