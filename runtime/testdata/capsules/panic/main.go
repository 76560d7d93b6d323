//go:build wasip1

// Command panic panics; the Go runtime prints the panic to stderr and
// exits with code 2.
package main

func main() {
	panic("capsule panic on purpose")
}
