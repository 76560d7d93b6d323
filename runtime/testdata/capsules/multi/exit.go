//go:build wasip1

package main

import (
	"log/slog"
	"os"

	"github.com/astrid-os/astrid-node/sdk"
)

// runExit (capsule name "exit") ends by itself with exit code 3.
func runExit() {
	sdk.Log(slog.LevelInfo, "exit: leaving")
	os.Exit(3)
}
