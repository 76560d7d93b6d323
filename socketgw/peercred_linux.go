package socketgw

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred returns the uid and pid the kernel recorded for the process
// that connected c (SO_PEERCRED): the client cannot forge them.
func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, -1, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return -1, -1, err
	}
	return int(cred.Uid), int(cred.Pid), nil
}

// sunPathMax is the size of sockaddr_un.sun_path including its NUL.
const sunPathMax = 108
