//go:build !linux

package e2e

import "syscall"

// ChildAttr is a no-op off Linux, which has no parent-death signal.
func ChildAttr() *syscall.SysProcAttr { return nil }
