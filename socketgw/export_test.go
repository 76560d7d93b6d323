package socketgw

import "os"

// SetSocketMode relaxes the mode of the socket files Bind creates, so a
// test can let a process of another uid reach the SO_PEERCRED check.
func SetSocketMode(g *Gateway, mode os.FileMode) { g.socketMode = mode }

// TokenOf returns the gateway's token for tests that check the file.
func TokenOf(g *Gateway) Token { return g.token }
