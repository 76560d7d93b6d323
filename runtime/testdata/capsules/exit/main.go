//go:build wasip1

// Command exit ends by itself with exit code 3.
package main

import (
	"log/slog"
	"os"

	"github.com/astrid-os/astrid-node/sdk"
)

func main() {
	sdk.Log(slog.LevelInfo, "exit: leaving")
	os.Exit(3)
}
