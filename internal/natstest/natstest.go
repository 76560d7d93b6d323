// Package natstest starts real embedded nats-servers for tests: on a free
// loopback port (Port: -1), with NoSigs so a signal never ends the test
// process, and shut down when the test ends.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server starts a nats-server and stops it at the test's cleanup.
func Server(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
	})
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("natstest: nats-server not ready after 10s")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Conn connects to s; the connection closes at the test's cleanup, before
// the server (cleanups run last-registered first).
func Conn(tb testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		tb.Fatalf("natstest: connecting to %s: %v", s.ClientURL(), err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Start is Server and one Conn to it.
func Start(tb testing.TB) *nats.Conn {
	tb.Helper()
	return Conn(tb, Server(tb))
}
