package main

import (
	"fmt"
	"io"
)

// cmdIdle is not built yet; it says so rather than pretending.
func cmdIdle(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "astrid-node idle: not implemented in this build")
	return 1
}
