package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/control"
)

const ctlUsage = `usage: astrid-node ctl [flags] <command>

commands:
  list                     capsules and instances on every node
  stats NODE               a node's counters
  load NODE CAPSULE        load a capsule on a node
  unload NODE CAPSULE      unload a capsule's instance on a node

Exit status: 0 done, 1 the request failed (NATS unreachable, unknown node,
refused), 2 bad command line.

flags:
`

// ctlArgs is how many arguments each ctl command takes, and their names
// for the error that a wrong count gets.
var ctlArgs = map[string][]string{
	"list":   nil,
	"stats":  {"NODE"},
	"load":   {"NODE", "CAPSULE"},
	"unload": {"NODE", "CAPSULE"},
}

func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	// Errors are reported in one line below; only -h prints the usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	url := fs.String("nats-url", envOr("NATS_URL", "nats://127.0.0.1:4222"),
		"NATS server(s) to reach the nodes through, comma-separated (env NATS_URL)")
	var auth natsAuth
	auth.register(fs)
	timeout := fs.Duration("timeout", 3*time.Second,
		"how long to wait for NATS and the replies; list spends half of it finding the nodes")
	asJSON := fs.Bool("json", false, "print replies as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, ctlUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		return ctlUsageError(stderr, err.Error())
	}
	if err := auth.resolve(); err != nil {
		return ctlUsageError(stderr, err.Error())
	}
	rest := fs.Args()
	if err := checkCtlArgs(rest); err != nil {
		return ctlUsageError(stderr, err.Error())
	}
	if *timeout <= 0 {
		return ctlUsageError(stderr, "--timeout must be positive")
	}

	nc, err := dialNATS(*url, auth, *timeout, "astrid-node ctl")
	if err != nil {
		fmt.Fprintf(stderr, "astrid-node ctl: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	c := ctl{nc: nc, out: stdout, errOut: stderr, json: *asJSON, wait: *timeout}
	switch rest[0] {
	case "list":
		err = c.list(ctx)
	case "stats":
		err = c.stats(ctx, rest[1])
	case "load":
		err = c.call(ctx, rest[1], control.VerbLoad, control.LoadRequest{Capsule: rest[2]})
	case "unload":
		err = c.call(ctx, rest[1], control.VerbUnload,
			control.UnloadRequest{Capsule: rest[2], Reason: "request"})
	}
	if err != nil {
		fmt.Fprintf(stderr, "astrid-node ctl %s: %v\n", rest[0], err)
		return 1
	}
	return 0
}

func ctlUsageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "astrid-node ctl: %s (see astrid-node ctl -h)\n", msg)
	return 2
}

// checkCtlArgs checks the command and its arguments before anything is
// sent, so a typo never reaches a node.
func checkCtlArgs(rest []string) error {
	if len(rest) == 0 {
		return errors.New("no command: want list, stats, load or unload")
	}
	names, ok := ctlArgs[rest[0]]
	if !ok {
		return fmt.Errorf("unknown command %q: want list, stats, load or unload", rest[0])
	}
	if got := len(rest) - 1; got != len(names) {
		want := "no arguments"
		if len(names) > 0 {
			want = strings.Join(names, " ")
		}
		return fmt.Errorf("%s takes %s; got %d argument(s)", rest[0], want, got)
	}
	if len(names) > 0 {
		if err := control.ValidNodeID(rest[1]); err != nil {
			return err
		}
	}
	if len(names) > 1 {
		if err := control.ValidCapsuleName(rest[2]); err != nil {
			return err
		}
	}
	return nil
}

type ctl struct {
	nc     *nats.Conn
	out    io.Writer
	errOut io.Writer
	json   bool
	wait   time.Duration
}

// list asks every node that answers discovery for its capsules. A node
// that fails to answer its list request is reported on stderr and makes
// the command fail, but the other nodes are still printed.
func (c ctl) list(ctx context.Context) error {
	// Discovery cannot know how many nodes exist, so it waits for answers
	// up to half the budget; the per-node list requests get the rest.
	nodes, err := control.Discover(ctx, c.nc, c.wait/2)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return errors.New("no node answered discovery")
	}
	var all []control.Reply
	var failed []string
	for _, node := range nodes {
		rep, err := control.Call(ctx, c.nc, node, control.VerbList, nil)
		if err != nil {
			fmt.Fprintf(c.errOut, "astrid-node ctl list: node %s: %v\n", node, err)
			failed = append(failed, node)
			continue
		}
		all = append(all, rep)
	}
	if err := c.printList(all); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d nodes did not answer: %s", len(failed), len(nodes),
			strings.Join(failed, ", "))
	}
	return nil
}

func (c ctl) printList(all []control.Reply) error {
	if c.json {
		if all == nil {
			all = []control.Reply{}
		}
		return json.NewEncoder(c.out).Encode(all)
	}
	tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCAPSULE\tSTATE\tINSTANCE\tSTREAMS\tSOCKET")
	for _, rep := range all {
		if len(rep.List) == 0 {
			fmt.Fprintf(tw, "%s\t-\tno capsules\t-\t0\t-\n", rep.Node)
		}
		for _, in := range rep.List {
			state, inst := "unloaded", "-"
			if in.Loaded {
				state, inst = "loaded", in.Instance
			}
			sock := in.Socket
			if sock == "" {
				sock = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", rep.Node, in.Capsule, state, inst,
				in.Streams, sock)
		}
	}
	return tw.Flush()
}

func (c ctl) stats(ctx context.Context, node string) error {
	st, err := control.CallStats(ctx, c.nc, node)
	if err != nil {
		return c.explain(ctx, node, err)
	}
	return json.NewEncoder(c.out).Encode(st)
}

func (c ctl) call(ctx context.Context, node, verb string, req any) error {
	rep, err := control.Call(ctx, c.nc, node, verb, req)
	if err != nil {
		return c.explain(ctx, node, err)
	}
	if c.json {
		return json.NewEncoder(c.out).Encode(rep)
	}
	fmt.Fprintf(c.out, "%s: ok node=%s instance=%s streams_closed=%d\n", verb, rep.Node,
		rep.Instance, rep.Streams)
	return nil
}

// explain turns "no responders" into the likely cause, an unknown or
// stopped node, and names the nodes that do answer.
func (c ctl) explain(ctx context.Context, node string, err error) error {
	if !errors.Is(err, nats.ErrNoResponders) {
		return err
	}
	msg := fmt.Sprintf("unknown node %q: no control service answers for it", node)
	nodes, _ := control.Discover(ctx, c.nc, min(c.wait/4, 500*time.Millisecond))
	if len(nodes) == 0 {
		return errors.New(msg + " (and no other node answered discovery)")
	}
	return fmt.Errorf("%s (nodes answering: %s)", msg, strings.Join(nodes, ", "))
}
