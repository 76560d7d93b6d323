package socketgw_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/socketgw"
	"github.com/astrid-os/astrid-node/socketgw/client"
)

// acceptOne waits for a stream on listener l.
func acceptOne(t testing.TB, s *socketgw.Session, l int32) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := s.Accept(ctx, l)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	return h
}

// readFrame waits for a whole frame on stream h.
func readFrame(t testing.TB, s *socketgw.Session, h int32) string {
	t.Helper()
	buf := make([]byte, 1<<16)
	var n int
	eventually(t, 5*time.Second, "a frame arrives", func() bool {
		var err error
		n, err = s.Read(h, buf)
		if err != nil && !errors.Is(err, abi.ErrPending) {
			t.Fatalf("Read: %v", err)
		}
		return err == nil
	})
	return string(buf[:n])
}

// waitFor blocks in Wait until a record of kind for handle shows up.
func waitFor(t testing.TB, s *socketgw.Session, handle int32, kind uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := make([]abi.Ready, 8)
	for {
		n, err := s.Wait(ctx, -1, out)
		if err != nil {
			t.Fatalf("Wait for handle %d kind %d: %v", handle, kind, err)
		}
		for _, r := range out[:n] {
			if r.Handle == handle && r.Kind == kind {
				return
			}
		}
	}
}

func TestStreamCap(t *testing.T) {
	e := newEnv(t, func(c *socketgw.Config) { c.MaxStreams = 8 })
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-cap")
	in := startEcho(t, s, "echo")

	conns := make([]*client.Conn, 9)
	for i := range conns {
		conns[i] = e.dial(t, path)
	}
	eventually(t, 5*time.Second, "8 active, 1 waiting", func() bool {
		return e.gw.Active("echo") == 8 && e.gw.Waiting("echo") == 1
	})
	if got := in.acceptedCount(); got != 8 {
		t.Fatalf("accepted: got %d; want 8", got)
	}

	// The queued client is not lost: it is served once a stream ends.
	conns[0].Close()
	eventually(t, 5*time.Second, "the 9th accepted", func() bool {
		return in.acceptedCount() == 9 && e.gw.Waiting("echo") == 0
	})
	roundTrip(t, conns[8], "ninth")
	if got := e.gw.Active("echo"); got != 8 {
		t.Errorf("Active: got %d; want 8", got)
	}
	if got := s.Active(); got != 8 {
		t.Errorf("Session.Active: got %d; want 8", got)
	}
}

func TestOversizeFrameClosesOnlyThatStream(t *testing.T) {
	e := newEnv(t, func(c *socketgw.Config) { c.MaxFrame = 1024 })
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-big")
	in := startEcho(t, s, "echo")

	good := e.dial(t, path)
	bad := e.dial(t, path)
	roundTrip(t, good, "before")
	roundTrip(t, bad, "before")

	if err := bad.WriteFrame(make([]byte, 1025)); err != nil {
		t.Fatal(err)
	}
	bad.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := bad.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Errorf("oversize sender: got %v; want EOF", err)
	}
	roundTrip(t, good, "after")

	eventually(t, 5*time.Second, "frame_too_large event", func() bool {
		for h := range int32(3) {
			r := e.rec.disconnects("inst-big", strconv.Itoa(int(h+1)))
			if len(r) == 1 && r[0] == events.ReasonFrameTooLarge {
				return true
			}
		}
		return false
	})
	if got := e.gw.Active("echo"); got != 1 {
		t.Errorf("Active: got %d; want 1", got)
	}
	_ = in
}

func TestPartialFramesByteByByte(t *testing.T) {
	e := newEnv(t, nil)
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-partial")
	l, _ := s.Bind("echo")

	raw := rawDial(t, e, path)
	h := acceptOne(t, s, l)

	// Two frames, then a third cut short, one byte per write.
	var wire []byte
	for _, p := range []string{"first frame", "", "second"} {
		wire = append(wire, rawFrame([]byte(p))...)
	}
	for i := range wire {
		if _, err := raw.Write(wire[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond)
	}
	for _, want := range []string{"first frame", "", "second"} {
		if got := readFrame(t, s, h); got != want {
			t.Fatalf("got %q; want %q", got, want)
		}
	}
	if _, err := s.Read(h, make([]byte, 16)); !errors.Is(err, abi.ErrPending) {
		t.Errorf("Read on a drained stream: got %v; want ErrPending", err)
	}
	s.Close(events.ReasonCapsuleUnloaded)
}

// rawDial authenticates a plain connection, so a test can write bytes
// the way no well-behaved client would split them.
func rawDial(t testing.TB, e *env, path string) net.Conn {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.Write(rawFrame(request(tokenHex(e.gw), 1)))
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := socketgw.ReadFrame(conn, socketgw.MaxHandshake); err != nil {
		t.Fatalf("handshake reply: %v", err)
	}
	conn.SetDeadline(time.Time{})
	return conn
}

func TestWriteTimeout(t *testing.T) {
	e := newEnv(t, func(c *socketgw.Config) { c.WriteTimeout = 200 * time.Millisecond })
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-slow")
	l, _ := s.Bind("echo")

	c := e.dial(t, path) // never reads
	h := acceptOne(t, s, l)

	big := make([]byte, 256<<10)
	var err error
	for range 100 {
		if err = s.Write(context.Background(), h, big); err != nil {
			break
		}
	}
	if !errors.Is(err, abi.ErrTimeout) {
		t.Fatalf("Write to a client that stops reading: got %v; want ErrTimeout", err)
	}
	if err := s.Write(context.Background(), h, []byte("x")); !errors.Is(err, abi.ErrClosed) {
		t.Errorf("Write after the timeout: got %v; want ErrClosed", err)
	}
	waitFor(t, s, h, abi.ReadyClosed)
	e.settle(t, "inst-slow", 1)
	if got := e.rec.disconnects("inst-slow", strconv.Itoa(int(h))); len(got) != 1 ||
		got[0] != events.ReasonWriteTimeout {
		t.Errorf("disconnects: got %v; want [write_timeout]", got)
	}
	_ = c
}

func TestReadSemantics(t *testing.T) {
	e := newEnv(t, nil)
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-read")
	l, err := s.Bind("echo")
	if err != nil || l != 1 {
		t.Fatalf("Bind: got %d, %v; want 1, nil", l, err)
	}
	if again, _ := s.Bind("echo"); again != l {
		t.Errorf("Bind twice: got %d; want %d", again, l)
	}
	if _, err := s.Bind("nope"); !errors.Is(err, abi.ErrNotFound) {
		t.Errorf("Bind unknown: got %v; want ErrNotFound", err)
	}
	if _, err := s.PollAccept(l); !errors.Is(err, abi.ErrPending) {
		t.Errorf("PollAccept with no client: got %v; want ErrPending", err)
	}

	c := e.dial(t, path)
	h := acceptOne(t, s, l)
	if h != 2 {
		t.Errorf("first stream handle: got %d; want 2", h)
	}

	if err := c.WriteFrame([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, h, abi.ReadyFrame)
	n, err := s.Read(h, make([]byte, 4))
	if n != 10 || !errors.Is(err, abi.ErrBufTooSmall) {
		t.Errorf("Read into a small buffer: got %d, %v; want 10, ErrBufTooSmall", n, err)
	}
	// The frame was kept; then the client hangs up after one more frame.
	c.WriteFrame([]byte("last"))
	c.Close()
	if got := readFrame(t, s, h); got != "0123456789" {
		t.Errorf("got %q; want the kept frame", got)
	}
	if got := readFrame(t, s, h); got != "last" {
		t.Errorf("got %q; want the frame sent before the hang-up", got)
	}
	waitFor(t, s, h, abi.ReadyClosed)
	if _, err := s.Read(h, make([]byte, 16)); !errors.Is(err, abi.ErrClosed) {
		t.Errorf("Read after the end: got %v; want ErrClosed", err)
	}

	tests := []struct {
		name   string
		handle int32
		want   error
	}{
		{"listener handle", l, abi.ErrBadHandle},
		{"never issued", 99, abi.ErrBadHandle},
		{"zero", 0, abi.ErrBadHandle},
		{"ended stream", h, abi.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Read(tt.handle, make([]byte, 8)); !errors.Is(err, tt.want) {
				t.Errorf("Read: got %v; want %v", err, tt.want)
			}
			err := s.Write(context.Background(), tt.handle, []byte("x"))
			if !errors.Is(err, tt.want) {
				t.Errorf("Write: got %v; want %v", err, tt.want)
			}
		})
	}
	if err := s.CloseStream(h); err != nil {
		t.Errorf("CloseStream on an ended stream: got %v; want nil", err)
	}
	if err := s.CloseStream(99); !errors.Is(err, abi.ErrBadHandle) {
		t.Errorf("CloseStream never issued: got %v; want ErrBadHandle", err)
	}
	err = s.Write(context.Background(), h, make([]byte, abi.MaxFrame+1))
	if !errors.Is(err, abi.ErrTooLarge) {
		t.Errorf("Write oversize: got %v; want ErrTooLarge", err)
	}
	if _, err := s.Wait(context.Background(), 0, nil); !errors.Is(err, abi.ErrInvalid) {
		t.Errorf("Wait with no room: got %v; want ErrInvalid", err)
	}
	n, err = s.Wait(context.Background(), 10*time.Millisecond, make([]abi.Ready, 4))
	if n != 0 || err != nil {
		t.Errorf("Wait with nothing ready: got %d, %v; want 0, nil", n, err)
	}
}

func TestBlockingCallsWakeOnCancel(t *testing.T) {
	e := newEnv(t, nil)
	e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-cancel")
	l, _ := s.Bind("echo")

	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Wait", func(ctx context.Context) error {
			_, err := s.Wait(ctx, -1, make([]abi.Ready, 4))
			return err
		}},
		{"Accept", func(ctx context.Context) error {
			_, err := s.Accept(ctx, l)
			return err
		}},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- tt.call(ctx) }()
			time.AfterFunc(20*time.Millisecond, cancel)
			select {
			case err := <-done:
				if !errors.Is(err, abi.ErrUnloading) {
					t.Errorf("got %v; want ErrUnloading", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still blocked 5s after cancel")
			}
		})
	}
}

func TestWriteWakesOnCancel(t *testing.T) {
	e := newEnv(t, func(c *socketgw.Config) { c.WriteTimeout = time.Minute })
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-wcancel")
	l, _ := s.Bind("echo")
	e.dial(t, path) // never reads
	h := acceptOne(t, s, l)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	big := make([]byte, 256<<10)
	var err error
	for range 1000 {
		if err = s.Write(ctx, h, big); err != nil {
			break
		}
	}
	if !errors.Is(err, abi.ErrUnloading) {
		t.Fatalf("got %v; want ErrUnloading", err)
	}
	if got := s.Close(events.ReasonCapsuleUnloaded); got != 1 {
		t.Errorf("Close: got %d; want 1 stream ended", got)
	}
}

// ending is what a test case needs to end a stream its way.
type ending struct {
	t *testing.T
	e *env
	s *socketgw.Session
	h int32
	c *client.Conn
}

// Every way a stream ends publishes exactly one disconnect with its
// reason, and connects minus disconnects returns to 0.
func TestDisconnectExactlyOnce(t *testing.T) {
	tests := []struct {
		reason string
		end    func(x *ending)
	}{
		{events.ReasonStreamClosed, func(x *ending) {
			if err := x.s.CloseStream(x.h); err != nil {
				x.t.Fatal(err)
			}
			x.s.CloseStream(x.h)
		}},
		{events.ReasonPeerClosed, func(x *ending) {
			x.c.Close()
			waitFor(x.t, x.s, x.h, abi.ReadyClosed)
			x.s.CloseStream(x.h)
		}},
		{events.ReasonFrameTooLarge, func(x *ending) {
			x.c.WriteFrame(make([]byte, 2048))
			waitFor(x.t, x.s, x.h, abi.ReadyClosed)
		}},
		{events.ReasonWriteTimeout, func(x *ending) {
			for x.s.Write(context.Background(), x.h, make([]byte, 256<<10)) == nil {
			}
			x.s.CloseStream(x.h)
		}},
		{events.ReasonCapsuleUnloaded, func(x *ending) {
			if got := x.s.Close(events.ReasonCapsuleUnloaded); got != 1 {
				x.t.Errorf("Close: got %d; want 1", got)
			}
			x.s.Close(events.ReasonCapsuleUnloaded)
			x.s.CloseStream(x.h)
		}},
		{events.ReasonCapsuleCrashed, func(x *ending) {
			x.s.Close(events.ReasonCapsuleCrashed)
		}},
		{events.ReasonNodeShutdown, func(x *ending) {
			x.e.gw.Close()
			if got := x.s.Close(events.ReasonCapsuleUnloaded); got != 0 {
				x.t.Errorf("Session.Close after Gateway.Close: got %d; want 0", got)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *socketgw.Config) {
				c.MaxFrame = 1024
				c.WriteTimeout = 150 * time.Millisecond
			})
			path := e.bind(t, "echo", "echo")
			inst := fmt.Sprintf("inst-%d", i)
			s := e.gw.Attach("echo", inst)
			l, _ := s.Bind("echo")

			c := e.dial(t, path)
			h := acceptOne(t, s, l)
			eventually(t, 5*time.Second, "connected event", func() bool {
				n, _ := e.rec.balance(inst)
				return n == 1
			})

			tt.end(&ending{t: t, e: e, s: s, h: h, c: c})
			e.settle(t, inst, 1)
			// A late duplicate would show up here.
			e.nc.Flush()
			got := e.rec.disconnects(inst, strconv.Itoa(int(h)))
			if len(got) != 1 || got[0] != tt.reason {
				t.Errorf("disconnects of stream %d: got %v; want [%s]", h, got, tt.reason)
			}
			if got := e.gw.Active("echo"); got != 0 {
				t.Errorf("Active: got %d; want 0", got)
			}
			s.Close(events.ReasonCapsuleUnloaded)
		})
	}
}

// Many streams ending at once, from both sides, still balance.
func TestDisconnectBalanceUnderChurn(t *testing.T) {
	e := newEnv(t, func(c *socketgw.Config) { c.MaxStreams = 64 })
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-churn")
	in := startEcho(t, s, "echo")

	var conns []*client.Conn
	for range 40 {
		conns = append(conns, e.dial(t, path))
	}
	eventually(t, 5*time.Second, "all accepted", func() bool { return in.acceptedCount() == 40 })
	for i, c := range conns {
		if i%2 == 0 {
			c.Close()
		}
	}
	in.stop()
	closed := s.Close(events.ReasonCapsuleUnloaded)
	e.settle(t, "inst-churn", 40)

	// Streams whose hang-up raced the unload end one way or the other.
	peer := 0
	for h := range int32(41) {
		for _, r := range e.rec.disconnects("inst-churn", strconv.Itoa(int(h+1))) {
			if r == events.ReasonPeerClosed {
				peer++
			}
		}
	}
	if closed < 20 || closed+peer != 40 {
		t.Errorf("ended by Close %d, by the peer %d; want at least 20 and 40 in all",
			closed, peer)
	}
}

// With no instance attached, a queued client triggers the activation
// hook; an unload keeps queued clients for the next instance.
func TestSocketActivation(t *testing.T) {
	var calls atomic.Int32
	e := newEnv(t, func(c *socketgw.Config) {
		c.OnPending = func(capsule string) {
			if capsule == "echo" {
				calls.Add(1)
			}
		}
	})
	path := e.bind(t, "echo", "echo")

	c1 := e.dial(t, path)
	eventually(t, 5*time.Second, "activation hook called", func() bool {
		return calls.Load() >= 1 && e.gw.Waiting("echo") == 1
	})

	first := e.gw.Attach("echo", "inst-a")
	startEcho(t, first, "echo")
	roundTrip(t, c1, "one")

	// The capsule is unloaded; a new client waits for the next instance.
	before := calls.Load()
	first.Close(events.ReasonCapsuleUnloaded)
	c1.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c1.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Errorf("stream of the unloaded instance: got %v; want EOF", err)
	}
	c2 := e.dial(t, path)
	eventually(t, 5*time.Second, "hook called again", func() bool {
		return calls.Load() > before && e.gw.Waiting("echo") == 1
	})
	second := e.gw.Attach("echo", "inst-b")
	startEcho(t, second, "echo")
	roundTrip(t, c2, "two")
	e.settle(t, "inst-a", 1)
}

// The wire the client sees: a raw frame helper check.
func TestFrameHelpersRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for _, n := range []int{0, 1, 100, 70 << 10} {
		p := []byte(strings.Repeat("x", n))
		go socketgw.WriteFrame(a, p)
		got, err := socketgw.ReadFrame(b, 1<<20)
		if err != nil || len(got) != n {
			t.Fatalf("size %d: got %d bytes, %v", n, len(got), err)
		}
	}
}

// Gateway.Close ends everything at once: an open stream, a queued
// client, a client still in its handshake, and a blocked Wait.
func TestGatewayCloseEndsEverything(t *testing.T) {
	e := newEnv(t, func(c *socketgw.Config) { c.MaxStreams = 1 })
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-shutdown")
	l, _ := s.Bind("echo")

	open := e.dial(t, path)
	h := acceptOne(t, s, l)
	queued := e.dial(t, path)
	eventually(t, 5*time.Second, "one queued", func() bool { return e.gw.Waiting("echo") == 1 })
	silent, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	waitErr := make(chan error, 1)
	go func() {
		_, err := s.Wait(context.Background(), -1, make([]abi.Ready, 4))
		waitErr <- err
	}()

	if err := e.gw.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waitErr:
		if !errors.Is(err, abi.ErrUnloading) {
			t.Errorf("blocked Wait: got %v; want ErrUnloading", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait still blocked after Gateway.Close")
	}
	for name, c := range map[string]interface{ ReadFrame() ([]byte, error) }{
		"open": open, "queued": queued,
	} {
		if _, err := c.ReadFrame(); err == nil {
			t.Errorf("%s client: got a frame; want the connection closed", name)
		}
	}
	silent.SetDeadline(time.Now().Add(5 * time.Second))
	if n, _ := silent.Read(make([]byte, 8)); n != 0 {
		t.Errorf("client in handshake: got %d bytes; want none", n)
	}
	e.settle(t, "inst-shutdown", 1)
	if got := e.rec.disconnects("inst-shutdown", strconv.Itoa(int(h))); len(got) != 1 ||
		got[0] != events.ReasonNodeShutdown {
		t.Errorf("disconnects: got %v; want [node_shutdown]", got)
	}
	if err := e.gw.Bind("echo", "other"); err == nil {
		t.Errorf("Bind after Close: got nil; want an error")
	}
	if got := e.gw.Attach("never-bound", "late"); got == nil {
		t.Fatal("Attach after Close returned nil")
	} else if _, err := got.Wait(context.Background(), 0, make([]abi.Ready, 1)); !errors.Is(
		err, abi.ErrUnloading) {
		t.Errorf("Session of a closed gateway: got %v; want ErrUnloading", err)
	}
}

// Clients that queue while the activation hook runs cause one more call,
// not one call each.
func TestActivationHookCoalesces(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	e := newEnv(t, func(c *socketgw.Config) {
		c.OnPending = func(string) {
			if calls.Add(1) == 1 {
				<-release
			}
		}
	})
	path := e.bind(t, "echo", "echo")

	for range 10 {
		e.dial(t, path)
	}
	eventually(t, 5*time.Second, "10 queued", func() bool { return e.gw.Waiting("echo") == 10 })
	close(release)
	eventually(t, 5*time.Second, "hook called again", func() bool { return calls.Load() == 2 })

	s := e.gw.Attach("echo", "inst-hook")
	in := startEcho(t, s, "echo")
	eventually(t, 5*time.Second, "all accepted", func() bool { return in.acceptedCount() == 8 })
	if got := calls.Load(); got != 2 {
		t.Errorf("hook calls: got %d; want 2", got)
	}
}

// A stream the guest closed itself is never reported as ReadyClosed,
// even if the client hung up first.
func TestClosedByGuestNotReported(t *testing.T) {
	e := newEnv(t, nil)
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-guest")
	l, _ := s.Bind("echo")

	c := e.dial(t, path)
	h := acceptOne(t, s, l)
	c.Close()
	// The instance's own reads notice the hang-up.
	buf := make([]byte, 16)
	eventually(t, 5*time.Second, "peer hang-up seen", func() bool {
		_, err := s.Read(h, buf)
		return errors.Is(err, abi.ErrClosed) && s.Active() == 0
	})
	if err := s.CloseStream(h); err != nil {
		t.Fatal(err)
	}
	out := make([]abi.Ready, 4)
	n, err := s.Wait(context.Background(), 0, out)
	if err != nil || n != 0 {
		t.Errorf("Wait after CloseStream: got %v, %v; want nothing", out[:n], err)
	}
	e.settle(t, "inst-guest", 1)
	if got := e.rec.disconnects("inst-guest", strconv.Itoa(int(h))); len(got) != 1 ||
		got[0] != events.ReasonPeerClosed {
		t.Errorf("disconnects: got %v; want [peer_closed]", got)
	}
}

// The end of a ctx interrupts only writes made under that ctx: a ctx
// the instance has moved on from does not disturb later writes.
func TestWriteCtxSwitch(t *testing.T) {
	e := newEnv(t, nil)
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-switch")
	l, _ := s.Bind("echo")
	c := e.dial(t, path)
	h := acceptOne(t, s, l)

	a, cancelA := context.WithCancel(context.Background())
	b, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	for i, ctx := range []context.Context{a, b} {
		if err := s.Write(ctx, h, []byte{byte(i)}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	cancelA()
	if err := s.Write(a, h, []byte("a")); !errors.Is(err, abi.ErrUnloading) {
		t.Errorf("write under a cancelled ctx: got %v; want ErrUnloading", err)
	}
	if err := s.Write(b, h, []byte("b")); err != nil {
		t.Errorf("write under the live ctx after the old one ended: got %v; want nil", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"\x00", "\x01", "b"} {
		if got, err := c.ReadFrame(); err != nil || string(got) != want {
			t.Fatalf("client read: got %q, %v; want %q", got, err, want)
		}
	}
}

// A client that floods a stream the instance does not read is held back
// by the kernel once the gateway's small read-ahead is full; nothing it
// managed to send is lost.
func TestBackpressure(t *testing.T) {
	e := newEnv(t, func(c *socketgw.Config) { c.MaxFrame = 4096 })
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-flood")
	l, _ := s.Bind("echo")
	raw := rawDial(t, e, path)
	h := acceptOne(t, s, l)

	// Write numbered 1 KiB frames until the kernel stops taking them.
	frame := make([]byte, 1024)
	sent := 0
	var wire []byte
	for ; sent < 1<<14; sent++ {
		binary.BigEndian.PutUint32(frame, uint32(sent))
		wire = append(wire[:0], rawFrame(frame)...)
		raw.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := raw.Write(wire); err != nil {
			break
		}
	}
	if sent == 1<<14 {
		t.Fatalf("16 MiB went in without the instance reading; want backpressure")
	}
	t.Logf("the kernel and the gateway took %d frames before the client blocked", sent)

	// Everything sent completely arrives, in order. The frame the write
	// deadline cut may have gone out in part; it is not counted.
	buf := make([]byte, 4096)
	for i := range sent {
		var n int
		eventually(t, 5*time.Second, "next frame", func() bool {
			var err error
			n, err = s.Read(h, buf)
			return err == nil
		})
		if n != 1024 || binary.BigEndian.Uint32(buf) != uint32(i) {
			t.Fatalf("frame %d: got %d bytes numbered %d", i, n, binary.BigEndian.Uint32(buf))
		}
	}
}

// A client may send frames right behind its handshake request, in the
// same write: they are the stream's first frames, not lost or mistaken
// for part of the request.
func TestFramesBehindTheRequest(t *testing.T) {
	e := newEnv(t, nil)
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-early")
	l, _ := s.Bind("echo")

	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok := socketgw.TokenOf(e.gw)
	raw := rawFrame(request(tok.Hex(), socketgw.ProtocolVersion))
	raw = append(raw, rawFrame([]byte("first"))...)
	raw = append(raw, rawFrame([]byte("second"))...)
	if _, err := conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	reply, err := socketgw.ReadFrame(conn, socketgw.MaxHandshake)
	if err != nil || !strings.Contains(string(reply), `"status":"ok"`) {
		t.Fatalf("handshake reply %q, %v; want ok", reply, err)
	}

	h := acceptOne(t, s, l)
	for _, want := range []string{"first", "second"} {
		if got := readFrame(t, s, h); got != want {
			t.Fatalf("frame %q; want %q", got, want)
		}
	}
}
