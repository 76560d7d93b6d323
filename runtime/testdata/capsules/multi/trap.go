//go:build wasip1

package main

import (
	"log/slog"
	"unsafe"

	"github.com/astrid-os/astrid-node/sdk"
)

var trapSink byte

// runTrap (capsule name "trap") loads from an address far outside its linear memory, which
// is a wasm trap (Go checks only nil pointers itself).
func runTrap() {
	sdk.Log(slog.LevelInfo, "trap: about to trap")
	p := (*byte)(unsafe.Pointer(uintptr(0xfff0_0000)))
	trapSink = *p
	sdk.Log(slog.LevelError, "trap: survived")
}
