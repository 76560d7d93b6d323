//go:build wasip1

package main

import (
	"log/slog"

	"github.com/astrid-os/astrid-node/sdk"
)

// runNocap (capsule name "nocap") binds a socket its manifest grants ("allowed") and one it
// does not ("secret"), logs what each bind returned, then parks.
func runNocap() {
	for _, name := range []string{"allowed", "secret"} {
		_, err := sdk.Bind(name)
		msg := "ok"
		if err != nil {
			msg = err.Error()
		}
		sdk.Log(slog.LevelInfo, "nocap: bind "+name+": "+msg)
	}
	sdk.Log(slog.LevelInfo, "nocap: last error: "+sdk.LastError())
	sdk.WaitUnload()
}
