//go:build wasip1

package main

import (
	"log/slog"

	"github.com/astrid-os/astrid-node/sdk"
)

var allocSink []byte

// runAlloc (capsule name "alloc") allocates 100 MB, more than the node's 64 MiB memory
// ceiling: the Go runtime must fail to grow memory and end the instance.
func runAlloc() {
	sdk.Log(slog.LevelInfo, "alloc: allocating 100 MB")
	allocSink = make([]byte, 100<<20)
	for i := range allocSink {
		allocSink[i] = byte(i)
	}
	sdk.Log(slog.LevelError, "alloc: allocated 100 MB")
	sdk.WaitUnload()
}
