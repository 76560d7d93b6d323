//go:build wasip1

package main

import (
	"os"
	"strconv"
	"unsafe"
)

//go:wasmimport astrid instance_id
func benchInstanceID(ptr unsafe.Pointer, n uint32) int32

var benchBuf [64]byte

//go:noinline
func benchFloor(ptr unsafe.Pointer, n uint32) int32 {
	if n == 0 {
		return -1
	}
	return int32(n)
}

// runBench (capsule name "bench") measures guest->host call overhead. Arguments: mode
// ("call": N instance_id calls; "floor": the same loop calling a Go
// function instead) and N. The benchmark in the runtime package times it.
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
