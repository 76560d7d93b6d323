//go:build wasip1

// Command crashy is a test capsule that crashes on purpose. Named
// "crashy" it echoes frames and traps on the frame "crash"; named
// "crashload" it binds its socket and exits with an error at once, as a
// capsule broken at start would.
package main

import (
	"log/slog"
	"os"

	"github.com/astrid-os/astrid-node/sdk"
)

func main() {
	l, err := sdk.Bind(os.Args[0])
	if err != nil {
		sdk.Log(slog.LevelError, "crashy: bind: "+err.Error())
		os.Exit(1)
	}
	if os.Args[0] == "crashload" {
		os.Exit(3)
	}
	err = sdk.Serve(func(s *sdk.Stream, frame []byte) error {
		if string(frame) == "crash" {
			panic("crashy: asked to crash")
		}
		return s.Write(frame)
	}, l)
	if err != nil {
		os.Exit(1)
	}
}
