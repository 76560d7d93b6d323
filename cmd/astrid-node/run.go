package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/astrid-os/astrid-node/node"
)

// shutdownSlack is added to --grace to bound the whole shutdown: stopping
// capsules gets the grace, draining NATS what is left.
const shutdownSlack = 10 * time.Second

// maxStreamsLimit bounds --max-streams; each stream costs a goroutine and
// buffers in the gateway.
const maxStreamsLimit = 4096

// runOptions is everything `astrid-node run` was asked to do. The node
// fields go to node.Start; the rest is for the runtime, socket gateway and
// idle monitor, which startCapsules (capsules.go) wires in.
type runOptions struct {
	node node.Config
	log  logFlags

	capsules     string        // directory of capsule folders
	idleTimeout  time.Duration // default idle timeout of a capsule; 0: never
	exitWhenIdle time.Duration // exit after the node was idle this long; 0: off
	maxStreams   int           // open streams per instance
	grace        time.Duration // how long a capsule gets to stop on unload
	idleMonitor  string        // node.IdleMonitorLocal, Cluster or Off
	cacheDir     string        // wazero compilation cache

	// requestExit ends the node as a signal would; the idle monitor calls
	// it for --exit-when-idle.
	requestExit func(reason string)
}

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func cmdRun(args []string, stdout, stderr io.Writer) int {
	opts, err := parseRunFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "astrid-node run: %v (see astrid-node run -h)\n", err)
		return 2
	}

	log := opts.log.logger(stderr)
	opts.node.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, quit := context.WithCancelCause(ctx)
	defer quit(nil)
	opts.requestExit = func(reason string) { quit(errors.New(reason)) }

	n, err := node.Start(ctx, opts.node)
	if err != nil {
		fmt.Fprintf(stderr, "astrid-node run: %v\n", err)
		if errors.Is(err, node.ErrConfig) {
			return 2
		}
		return 1
	}

	stopCapsules, err := startCapsules(ctx, n, opts)
	if err != nil {
		fmt.Fprintf(stderr, "astrid-node run: %v\n", err)
		shutdown(n, func(context.Context) error { return nil }, opts.grace, log)
		return 1
	}

	// A signal during the start stops the node before it announces itself.
	if ctx.Err() != nil {
		log.Info("node stopping before ready", "cause", context.Cause(ctx))
		if err := shutdown(n, stopCapsules, opts.grace, log); err != nil {
			fmt.Fprintf(stderr, "astrid-node run: shutdown: %v\n", err)
			return 1
		}
		return 0
	}
	if err := n.WriteReady(); err != nil {
		fmt.Fprintf(stderr, "astrid-node run: %v\n", err)
		shutdown(n, stopCapsules, opts.grace, log)
		return 1
	}
	url := n.ClientURL()
	if url == "" {
		url = "none"
	}
	fmt.Fprintf(stdout, "astrid-node ready: node=%s nats=%s\n", n.ID(), url)

	<-ctx.Done()
	log.Info("node stopping", "cause", context.Cause(ctx))
	if err := shutdown(n, stopCapsules, opts.grace, log); err != nil {
		fmt.Fprintf(stderr, "astrid-node run: shutdown: %v\n", err)
		return 1
	}
	return 0
}

// shutdown stops the capsules (their streams end and their last events
// are published) and then the node.
func shutdown(n *node.Node, stopCapsules func(context.Context) error, grace time.Duration,
	log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace+shutdownSlack)
	defer cancel()

	var errs []error
	if err := stopCapsules(ctx); err != nil {
		log.Error("stopping capsules", "err", err)
		errs = append(errs, err)
	}
	if err := n.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseRunFlags(args []string, stdout io.Writer) (runOptions, error) {
	var o runOptions
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	// Errors are reported in one line by the caller; -h prints to stdout.
	fs.SetOutput(io.Discard)

	defaultHome := os.Getenv("ASTRID_HOME")
	if defaultHome == "" {
		if h, err := os.UserHomeDir(); err == nil {
			defaultHome = filepath.Join(h, ".astrid")
		}
	}
	var routes string
	c := &o.node
	fs.StringVar(&c.Home, "home", defaultHome,
		"node home: node.id, run/, capsules/ (env ASTRID_HOME)")
	fs.StringVar(&c.NodeID, "node-id", "", "node id (default: from HOME/node.id, generated once)")
	fs.StringVar(&c.NATSListen, "nats-listen", node.DefaultNATSListen,
		"embedded NATS client listener HOST:PORT (port 0: any free port; none: in-process only)")
	fs.StringVar(&c.NATSURL, "nats-url", "",
		"join an existing NATS server or cluster (comma-separated URLs) instead of embedding one")
	var auth natsAuth
	auth.register(fs)
	fs.DurationVar(&c.ConnectWait, "nats-connect-wait", node.DefaultConnectWait,
		"how long to keep trying an unreachable --nats-url at startup")
	fs.StringVar(&c.ClusterListen, "cluster-listen", "",
		"embedded NATS cluster listener HOST:PORT for routes from other nodes")
	fs.StringVar(&routes, "routes", "", "comma-separated nats://HOST:PORT routes to other nodes")
	fs.StringVar(&c.ClusterName, "cluster-name", "",
		"NATS cluster name (default "+node.DefaultClusterName+")")
	fs.DurationVar(&c.Heartbeat, "heartbeat", node.DefaultHeartbeat, "node.v1.heartbeat interval")
	o.log.register(fs)
	fs.StringVar(&o.capsules, "capsules", "", "capsule directory (default HOME/capsules)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 5*time.Minute,
		"unload a capsule after this long without streams, unless its manifest says "+
			"otherwise (0: never)")
	fs.DurationVar(&o.exitWhenIdle, "exit-when-idle", 0,
		"exit once no capsule has had a stream for this long (0: never)")
	fs.IntVar(&o.maxStreams, "max-streams", 8, "open streams per capsule instance")
	fs.DurationVar(&o.grace, "grace", 2*time.Second,
		"how long a capsule gets to stop when unloaded")
	fs.StringVar(&o.idleMonitor, "idle-monitor", node.IdleMonitorLocal,
		"idle monitor inside the node: local (this node's capsules), cluster (every "+
			"node's) or off (a standalone astrid-node idle does it)")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "compiled capsule cache (default HOME/cache)")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "usage: astrid-node run [flags]")
			fmt.Fprintln(stdout)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return o, err
	}
	if err := auth.resolve(); err != nil {
		return o, usageError{err.Error()}
	}
	c.NATSUser, c.NATSPassword, c.NATSCreds = auth.user, auth.password, auth.creds
	if fs.NArg() > 0 {
		return o, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return o, o.check(routes)
}

// check validates what the flag package cannot and fills derived fields.
func (o *runOptions) check(routes string) error {
	if o.node.Home == "" {
		return usageError{"no home directory: set --home or ASTRID_HOME"}
	}
	if o.capsules == "" {
		o.capsules = filepath.Join(o.node.Home, "capsules")
	}
	if o.cacheDir == "" {
		o.cacheDir = filepath.Join(o.node.Home, "cache")
	}
	switch o.idleMonitor {
	case node.IdleMonitorLocal, node.IdleMonitorCluster, node.IdleMonitorOff:
	default:
		return usageError{fmt.Sprintf("--idle-monitor %q: want local, cluster or off",
			o.idleMonitor)}
	}
	for _, r := range strings.Split(routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			o.node.Routes = append(o.node.Routes, r)
		}
	}

	if err := o.log.resolve(); err != nil {
		return usageError{err.Error()}
	}

	durations := []struct {
		name string
		d    time.Duration
		min  time.Duration
	}{
		{"--heartbeat", o.node.Heartbeat, time.Millisecond},
		{"--nats-connect-wait", o.node.ConnectWait, time.Millisecond},
		{"--idle-timeout", o.idleTimeout, 0},
		{"--exit-when-idle", o.exitWhenIdle, 0},
		{"--grace", o.grace, 0},
	}
	for _, d := range durations {
		if d.d < d.min {
			return usageError{fmt.Sprintf("%s %v: must be at least %v", d.name, d.d, d.min)}
		}
	}
	if o.maxStreams < 1 || o.maxStreams > maxStreamsLimit {
		return usageError{fmt.Sprintf("--max-streams %d: want 1 to %d", o.maxStreams,
			maxStreamsLimit)}
	}
	return nil
}
