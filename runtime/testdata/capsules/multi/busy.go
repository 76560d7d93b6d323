//go:build wasip1

package main

import (
	"log/slog"

	"github.com/astrid-os/astrid-node/sdk"
)

var busySink uint64

// runBusy (capsule name "busy") spins without ever calling the host: only a force-close
// can unload it.
func runBusy() {
	sdk.Log(slog.LevelInfo, "busy: spinning")
	for i := uint64(0); ; i++ {
		busySink += i
	}
}
