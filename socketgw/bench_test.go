package socketgw_test

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/socketgw"
	"github.com/astrid-os/astrid-node/socketgw/client"
)

// benchGateway is a gateway without NATS: no event is published per
// frame anyway, only per stream.
func benchGateway(b *testing.B) (*socketgw.Gateway, string) {
	b.Helper()
	run := filepath.Join(shortDir(b), "run")
	gw, err := socketgw.New(socketgw.Config{RunDir: run, MaxStreams: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gw.Close() })
	if err := gw.Bind("echo", "echo"); err != nil {
		b.Fatal(err)
	}
	return gw, socketgw.SocketPath(run, "echo")
}

// plainEcho is the floor: a Go Unix-socket echo server with the same
// framing and nothing else.
func plainEcho(b *testing.B) string {
	b.Helper()
	path := filepath.Join(shortDir(b), "plain.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	b.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		for {
			p, err := socketgw.ReadFrame(br, 1<<20)
			if err != nil {
				return
			}
			if err := socketgw.WriteFrame(conn, p); err != nil {
				return
			}
		}
	}()
	return path
}

func roundTrips(b *testing.B, n int, write func([]byte) error, read func() ([]byte, error)) {
	msg := make([]byte, 64)
	for range n {
		if err := write(msg); err != nil {
			b.Fatal(err)
		}
		if p, err := read(); err != nil || len(p) != len(msg) {
			b.Fatalf("echo: %d bytes, %v", len(p), err)
		}
	}
}

// BenchmarkRoundTrip64 sends a 64-byte frame through the gateway to a Go
// goroutine playing the instance (Wait, Read, Write) and back; the floor
// is the same exchange with a plain Go echo server, measured in the same
// run.
func BenchmarkRoundTrip64(b *testing.B) {
	floorPath := plainEcho(b)
	fc, err := net.Dial("unix", floorPath)
	if err != nil {
		b.Fatal(err)
	}
	defer fc.Close()
	fbr := bufio.NewReader(fc)
	fwrite := func(p []byte) error { return socketgw.WriteFrame(fc, p) }
	fread := func() ([]byte, error) { return socketgw.ReadFrame(fbr, 1<<20) }

	gw, path := benchGateway(b)
	s := gw.Attach("echo", "bench")
	startEcho(b, s, "echo")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c, err := client.Dial(ctx, path, gw.TokenPath())
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	// Warm both paths, then time the floor with the same count.
	roundTrips(b, 1000, fwrite, fread)
	roundTrips(b, 1000, c.WriteFrame, c.ReadFrame)
	start := time.Now()
	roundTrips(b, b.N, fwrite, fread)
	floor := time.Since(start)

	b.ReportAllocs()
	b.ResetTimer()
	roundTrips(b, b.N, c.WriteFrame, c.ReadFrame)
	b.StopTimer()

	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	floorOp := float64(floor.Nanoseconds()) / float64(b.N)
	b.ReportMetric(floorOp, "floor-ns/op")
	b.ReportMetric(perOp/floorOp, "x-floor")
	s.Close(events.ReasonCapsuleUnloaded)
}

// BenchmarkHandshake is the cost of one client connection: connect,
// SO_PEERCRED, handshake, queue, accept by the instance, hang-up.
func BenchmarkHandshake(b *testing.B) {
	gw, path := benchGateway(b)
	s := gw.Attach("echo", "bench")
	startEcho(b, s, "echo")

	// Floor: connect, one byte each way, close, on a plain listener.
	floorPath := filepath.Join(shortDir(b), "floor.sock")
	ln, err := net.Listen("unix", floorPath)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var one [1]byte
			c.Read(one[:])
			c.Write(one[:])
			c.Close()
		}
	}()
	defer ln.Close()
	start := time.Now()
	for range b.N {
		c, err := net.Dial("unix", floorPath)
		if err != nil {
			b.Fatal(err)
		}
		var one [1]byte
		c.Write(one[:])
		c.Read(one[:])
		c.Close()
	}
	floor := time.Since(start)

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := client.Dial(context.Background(), path, gw.TokenPath())
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/op")
	s.Close(events.ReasonCapsuleUnloaded)
}

// BenchmarkRoundTrip64Idle is BenchmarkRoundTrip64 with 200 idle streams
// open on the same instance: the round trip must not slow down with them.
func BenchmarkRoundTrip64Idle(b *testing.B) {
	gw, path := benchGateway(b)
	s := gw.Attach("echo", "bench")
	in := startEcho(b, s, "echo")
	dial := func() *client.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, path, gw.TokenPath())
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	const idle = 200
	for range idle {
		defer dial().Close()
	}
	eventually(b, 10*time.Second, "idle streams accepted", func() bool {
		return in.acceptedCount() == idle
	})
	c := dial()
	defer c.Close()

	roundTrips(b, 1000, c.WriteFrame, c.ReadFrame)
	b.ReportAllocs()
	b.ResetTimer()
	roundTrips(b, b.N, c.WriteFrame, c.ReadFrame)
	b.StopTimer()
	s.Close(events.ReasonCapsuleUnloaded)
}
