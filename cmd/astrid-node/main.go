// Command astrid-node runs a node of Astrid capsules (run) and talks to one
// as a client (connect, ctl, idle).
package main

import (
	"fmt"
	"io"
	"os"
)

// A subcommand parses its own flags from args and returns the exit code.
type subcommand struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func subcommands() []subcommand {
	return []subcommand{
		{"run", "run a node: embedded NATS, capsules, socket gateway", cmdRun},
		{"connect", "open a stream to a capsule's socket: stdin lines in, frames out", cmdConnect},
		{"ctl", "list, load and unload capsules on the nodes of a cluster", cmdCtl},
		{"idle", "run a standalone idle monitor against a NATS server", cmdIdle},
	}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range subcommands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "astrid-node: unknown command %q (see astrid-node help)\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: astrid-node <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range subcommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'astrid-node <command> -h' for the flags of a command.")
}
