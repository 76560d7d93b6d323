//go:build wasip1

// Command nocap binds a socket its manifest grants ("allowed") and one it
// does not ("secret"), logs what each bind returned, then parks.
package main

import (
	"log/slog"

	"github.com/astrid-os/astrid-node/sdk"
)

func main() {
	for _, name := range []string{"allowed", "secret"} {
		_, err := sdk.Bind(name)
		msg := "ok"
		if err != nil {
			msg = err.Error()
		}
		sdk.Log(slog.LevelInfo, "nocap: bind "+name+": "+msg)
	}
	sdk.WaitUnload()
}
