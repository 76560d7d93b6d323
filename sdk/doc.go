// Package sdk is the guest side of the astrid host ABI for capsules written
// in Go (GOOS=wasip1 GOARCH=wasm). It wraps the functions of package abi
// in Go idioms: errors are values that errors.Is matches against abi codes
// (errors.Is(err, abi.ErrPending)), and byte slices go in and out.
//
// A guest blocks entirely while it is in a host call, so a capsule serves
// its streams from one readiness loop (see Serve) rather than from one
// goroutine per stream.
//
// The package builds only for GOOS=wasip1; on other platforms it is this
// documentation alone.
package sdk
