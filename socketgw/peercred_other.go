//go:build !linux

package socketgw

import (
	"errors"
	"net"
)

// peerCred is only implemented on Linux; elsewhere every client is
// dropped, which is safe rather than useful.
func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	return -1, -1, errors.New("peer credentials are not supported on this platform")
}

// sunPathMax is the smallest sun_path size among the BSDs and macOS.
const sunPathMax = 104
