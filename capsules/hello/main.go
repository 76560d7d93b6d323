//go:build wasip1

// Command hello is a capsule without sockets: it greets the node's log,
// then stays loaded, parked in the host, until it is unloaded.
package main

import (
	"fmt"
	"log/slog"

	"github.com/astrid-os/astrid-node/sdk"
)

func main() {
	sdk.Log(slog.LevelInfo, "hello from instance "+sdk.InstanceID())
	fmt.Println("hello: stdout reaches the node log too")

	sdk.WaitUnload()
	sdk.Log(slog.LevelInfo, "hello: goodbye")
}
