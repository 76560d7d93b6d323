package main

import (
	"fmt"
	"io"
)

// cmdRun is not built yet; it says so rather than pretending.
func cmdRun(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "astrid-node run: not implemented in this build")
	return 1
}
