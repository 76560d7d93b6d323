//go:build wasip1

package sdk

import "unsafe"

// The host functions of abi.Module. docs/abi.md documents each one.

//go:wasmimport astrid log
func hostLog(level int32, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport astrid last_error
func hostLastError(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport astrid instance_id
func hostInstanceID(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport astrid net_bind_unix
func hostNetBindUnix(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport astrid net_accept
func hostNetAccept(listener int32) int32

//go:wasmimport astrid net_poll_accept
func hostNetPollAccept(listener int32) int32

//go:wasmimport astrid net_read
func hostNetRead(stream int32, ptr unsafe.Pointer, n uint32, need unsafe.Pointer) int32

//go:wasmimport astrid net_write
func hostNetWrite(stream int32, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport astrid net_close_stream
func hostNetClose(stream int32) int32

//go:wasmimport astrid net_wait
func hostNetWait(timeoutMS int32, ptr unsafe.Pointer, n uint32) int32

// bytesPtr returns the address of b's first byte, or nil for an empty b
// (the host accepts a nil pointer with length 0).
func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }
