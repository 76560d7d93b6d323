//go:build wasip1

package main

// runPanic (capsule name "panic") panics; the Go runtime prints the panic to stderr and
// exits with code 2.
func runPanic() {
	panic("capsule panic on purpose")
}
