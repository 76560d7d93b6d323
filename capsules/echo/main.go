//go:build wasip1

// Command echo is a capsule that writes every frame back to the stream it
// came from. One readiness loop serves all its streams.
package main

import (
	"log/slog"
	"os"

	"github.com/astrid-os/astrid-node/sdk"
)

func main() {
	l, err := sdk.Bind("echo")
	if err != nil {
		sdk.Log(slog.LevelError, "echo: bind: "+err.Error())
		os.Exit(1)
	}
	sdk.Log(slog.LevelInfo, "echo: serving")

	err = sdk.Serve(func(s *sdk.Stream, frame []byte) error {
		return s.Write(frame)
	}, l)
	if err != nil {
		sdk.Log(slog.LevelError, "echo: "+err.Error())
		os.Exit(1)
	}
	sdk.Log(slog.LevelInfo, "echo: unloading")
}
