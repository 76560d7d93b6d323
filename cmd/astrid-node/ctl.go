package main

import (
	"fmt"
	"io"
)

// cmdCtl is not built yet; it says so rather than pretending.
func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "astrid-node ctl: not implemented in this build")
	return 1
}
