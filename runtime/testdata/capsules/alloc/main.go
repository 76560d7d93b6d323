//go:build wasip1

// Command alloc allocates 100 MB, more than the node's 64 MiB memory
// ceiling: the Go runtime must fail to grow memory and end the instance.
package main

import (
	"log/slog"

	"github.com/astrid-os/astrid-node/sdk"
)

var sink []byte

func main() {
	sdk.Log(slog.LevelInfo, "alloc: allocating 100 MB")
	sink = make([]byte, 100<<20)
	for i := range sink {
		sink[i] = byte(i)
	}
	sdk.Log(slog.LevelError, "alloc: allocated 100 MB")
	sdk.WaitUnload()
}
