//go:build wasip1

// Command trap loads from an address far outside its linear memory, which
// is a wasm trap (Go checks only nil pointers itself).
package main

import (
	"log/slog"
	"unsafe"

	"github.com/astrid-os/astrid-node/sdk"
)

var sink byte

func main() {
	sdk.Log(slog.LevelInfo, "trap: about to trap")
	p := (*byte)(unsafe.Pointer(uintptr(0xfff0_0000)))
	sink = *p
	sdk.Log(slog.LevelError, "trap: survived")
}
