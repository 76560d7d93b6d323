//go:build wasip1

package main

import (
	"errors"
	"log/slog"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/sdk"
)

// runBlock (capsule name "block") parks in net_wait, a blocking host call, and returns once
// the host says it is unloading.
func runBlock() {
	sdk.Log(slog.LevelInfo, "block: waiting")
	_, err := sdk.Wait(-1, nil)
	if errors.Is(err, abi.ErrUnloading) {
		sdk.Log(slog.LevelInfo, "block: woke with unloading")
		return
	}
	sdk.Log(slog.LevelError, "block: woke with "+errString(err))
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
