//go:build wasip1

package main

import (
	"log/slog"
	"time"

	"github.com/astrid-os/astrid-node/sdk"
)

// runSleep (capsule name "sleep") sleeps in the Go runtime (WASI poll_oneoff), which knows
// nothing of unloads: only the force-close after the grace period ends it.
func runSleep() {
	sdk.Log(slog.LevelInfo, "sleep: sleeping")
	time.Sleep(time.Hour)
	sdk.Log(slog.LevelError, "sleep: woke up")
}
