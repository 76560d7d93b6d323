package main

import (
	"fmt"
	"io"
)

// cmdConnect is not built yet; it says so rather than pretending.
func cmdConnect(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "astrid-node connect: not implemented in this build")
	return 1
}
