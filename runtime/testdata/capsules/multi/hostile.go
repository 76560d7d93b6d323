//go:build wasip1

package main

import (
	"strconv"
	"unsafe"
)

//go:wasmimport astrid log
func hlog(level, ptr, n uint32) int32

//go:wasmimport astrid last_error
func lastError(ptr, n uint32) int32

//go:wasmimport astrid instance_id
func instanceID(ptr, n uint32) int32

//go:wasmimport astrid net_bind_unix
func bindUnix(ptr, n uint32) int32

//go:wasmimport astrid net_read
func netRead(stream, ptr, n, need uint32) int32

//go:wasmimport astrid net_write
func netWrite(stream, ptr, n uint32) int32

//go:wasmimport astrid net_wait
func netWait(timeout, ptr, n uint32) int32

// Bad pairs. Guest memory is at most 64 MiB, so every one of them lies at
// least partly outside it; "wrap" overflows uint32 when added.
var pairs = []struct {
	name   string
	ptr, n uint32
}{
	{"far", 0xffff_ff00, 1},
	{"wrap", 0xffff_fff0, 0x20},
	{"huge", 0, 0xffff_ffff},
	{"past", 64 << 20, 1},
}

var scratch [64]byte

func report(fn, c string, code int32) {
	msg := "hostile " + fn + " " + c + " " + strconv.Itoa(int(code))
	hlog(0, uint32(uintptr(unsafe.Pointer(unsafe.StringData(msg)))), uint32(len(msg)))
}

// runHostile (capsule name "hostile") passes out-of-bounds and overflowing pointer/length pairs
// to every host function that takes one and logs each result as
// "hostile <function> <case> <code>". It ends with "hostile: done" and
// parks: a bad pointer must cost it a code, never a trap.
func runHostile() {
	ok := uint32(uintptr(unsafe.Pointer(&scratch[0])))
	for _, p := range pairs {
		report("log", p.name, hlog(0, p.ptr, p.n))
		report("last_error", p.name, lastError(p.ptr, p.n))
		report("instance_id", p.name, instanceID(p.ptr, p.n))
		report("net_bind_unix", p.name, bindUnix(p.ptr, p.n))
		report("net_read.buf", p.name, netRead(1, p.ptr, p.n, ok))
		if p.ptr != 0 {
			report("net_read.need", p.name, netRead(1, ok, 4, p.ptr))
		}
		report("net_write", p.name, netWrite(1, p.ptr, p.n))
		report("net_wait", p.name, netWait(0, p.ptr, p.n))
	}

	// Malformed arguments other than pointers.
	report("log", "level", hlog(3, ok, 1))
	report("net_wait", "zero-cap", netWait(0, ok, 0))
	bad := "Bad/Name"
	report("net_bind_unix", "bad-name", bindUnix(
		uint32(uintptr(unsafe.Pointer(unsafe.StringData(bad)))), uint32(len(bad))))

	done := "hostile: done"
	hlog(0, uint32(uintptr(unsafe.Pointer(unsafe.StringData(done)))), uint32(len(done)))

	// Park until unloaded (net_wait without sockets waits for the unload).
	var rec [8]byte
	netWait(0xffff_ffff, uint32(uintptr(unsafe.Pointer(&rec[0]))), 1)
}
