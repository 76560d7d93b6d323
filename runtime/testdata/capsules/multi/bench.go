//go:build wasip1

package main

import (
	"os"
	"strconv"
	"unsafe"
)

//go:wasmimport astrid instance_id
func benchInstanceID(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport astrid net_wait
func benchWait(timeoutMS int32, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport astrid net_poll_accept
func benchPollAccept(listener int32) int32

//go:wasmimport astrid net_bind_unix
func benchBind(ptr unsafe.Pointer, n uint32) int32

var benchBuf [64]byte

//go:noinline
func benchFloor(ptr unsafe.Pointer, n uint32) int32 {
	if n == 0 {
		return -1
	}
	return int32(n)
}

// runBench (capsule name "bench") measures guest->host call overhead. Arguments: mode
// ("call": N instance_id calls; "wait": N net_wait calls that find
// nothing; "poll": N net_poll_accept calls that find nothing; "floor": the
// same loop calling a Go function instead) and N. The benchmark in the runtime package times it.
func runBench() {
	if len(os.Args) < 3 {
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		os.Exit(2)
	}
	p := unsafe.Pointer(&benchBuf[0])
	var sum int32
	switch os.Args[1] {
	case "call":
		for range n {
			sum += benchInstanceID(p, uint32(len(benchBuf)))
		}
	case "wait": // net_wait with timeout 0 and nothing ready: returns 0
		for range n {
			sum += benchWait(0, p, uint32(len(benchBuf)/8))
		}
	case "poll": // net_poll_accept on a bound listener with no client: ErrPending
		name := "bench"
		l := benchBind(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)))
		if l < 0 {
			os.Exit(3)
		}
		for range n {
			sum += benchPollAccept(l)
		}
	case "floor":
		for range n {
			sum += benchFloor(p, uint32(len(benchBuf)))
		}
	default:
		os.Exit(2)
	}
	if sum == -1 {
		os.Exit(1)
	}
}
