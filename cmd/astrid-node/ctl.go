package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

flags:
`

func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("nats-url", envOr("NATS_URL", "nats://127.0.0.1:4222"),
		"NATS server to reach the nodes through (env NATS_URL)")
	user := fs.String("nats-user", "", "NATS user name")
	pass := fs.String("nats-password", "", "NATS password")
	creds := fs.String("nats-creds", "", "NATS credentials file")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for replies")
	asJSON := fs.Bool("json", false, "print replies as JSON")
	fs.Usage = func() {
		fmt.Fprint(stderr, ctlUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage(err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	want := map[string]int{"list": 0, "stats": 1, "load": 2, "unload": 2}
	n, ok := want[rest[0]]
	if !ok || len(rest)-1 != n {
		fmt.Fprintf(stderr, "astrid-node ctl: bad command %q (see astrid-node ctl -h)\n",
			joinArgs(rest))
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "astrid-node ctl: --timeout must be positive")
		return 2
	}

	nc, err := dialNATS(*url, *user, *pass, *creds, *timeout, "astrid-node ctl")
	if err != nil {
		fmt.Fprintf(stderr, "astrid-node ctl: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	c := ctl{nc: nc, out: stdout, json: *asJSON, wait: *timeout}
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

type ctl struct {
	nc   *nats.Conn
	out  io.Writer
	json bool
	wait time.Duration
}

func (c ctl) list(ctx context.Context) error {
	// Discovery waits for answers up to half the budget; the per-node
	// list requests get the rest.
	nodes, err := control.Discover(ctx, c.nc, c.wait/2)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return errors.New("no node answered")
	}
	var all []control.Reply
	for _, node := range nodes {
		rep, err := control.Call(ctx, c.nc, node, control.VerbList, nil)
		if err != nil {
			return err
		}
		all = append(all, rep)
	}
	if c.json {
		return json.NewEncoder(c.out).Encode(all)
	}
	tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCAPSULE\tSTATE\tINSTANCE\tSTREAMS\tSOCKET")
	for _, rep := range all {
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
		return err
	}
	return json.NewEncoder(c.out).Encode(st)
}

func (c ctl) call(ctx context.Context, node, verb string, req any) error {
	rep, err := control.Call(ctx, c.nc, node, verb, req)
	if err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(c.out).Encode(rep)
	}
	fmt.Fprintf(c.out, "%s: ok node=%s instance=%s streams_closed=%d\n", verb, rep.Node,
		rep.Instance, rep.Streams)
	return nil
}
