package e2e

import "syscall"

// ChildAttr makes a child process die with the test binary, so a test
// that dies without its cleanups leaves nothing running.
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
