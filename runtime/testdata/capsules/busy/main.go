//go:build wasip1

// Command busy spins without ever calling the host: only a force-close
// can unload it.
package main

import (
	"log/slog"

	"github.com/astrid-os/astrid-node/sdk"
)

var sink uint64

func main() {
	sdk.Log(slog.LevelInfo, "busy: spinning")
	for i := uint64(0); ; i++ {
		sink += i
	}
}
