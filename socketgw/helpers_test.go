package socketgw_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/astrid-os/astrid-node/internal/natstest"
	"github.com/astrid-os/astrid-node/internal/poll"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/runtime"
	"github.com/astrid-os/astrid-node/socketgw"
	"github.com/astrid-os/astrid-node/socketgw/client"
)

// The gateway's Session is what the runtime's net_* host functions call.
var _ runtime.Sockets = (*socketgw.Session)(nil)

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, within, what, cond)
}

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// recorder subscribes to the client events of a real NATS server.
type recorder struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *recorder) all() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.evs...)
}

// disconnects returns the reasons of the disconnect events of stream.
func (r *recorder) disconnects(instance, stream string) []string {
	var out []string
	for _, ev := range r.all() {
		if ev.Topic == events.SubjectDisconnect && ev.Instance == instance &&
			ev.Stream == stream {
			out = append(out, ev.Payload.(events.Disconnect).Reason)
		}
	}
	return out
}

// balance is connects minus disconnects of instance.
func (r *recorder) balance(instance string) (connects, disconnects int) {
	for _, ev := range r.all() {
		if ev.Instance != instance {
			continue
		}
		switch ev.Topic {
		case events.SubjectConnected:
			connects++
		case events.SubjectDisconnect:
			disconnects++
		}
	}
	return connects, disconnects
}

// env is one gateway with a real NATS server and a subscriber.
type env struct {
	gw   *socketgw.Gateway
	dir  string
	logs *logBuf
	rec  *recorder
	nc   *nats.Conn
}

func startNATS(t testing.TB) *nats.Conn { return natstest.Start(t) }

// shortDir returns a temp dir with a short path: sun_path holds 107 bytes.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sgw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newEnv(t testing.TB, tweak func(*socketgw.Config)) *env {
	t.Helper()
	e := &env{dir: shortDir(t), logs: &logBuf{}, rec: &recorder{}}
	e.nc = startNATS(t)
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	sub, err := events.Subscribe(e.nc, "client.v1.>", log, func(ev events.Event) {
		e.rec.mu.Lock()
		e.rec.evs = append(e.rec.evs, ev)
		e.rec.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	// A second connection publishes, as the node's would.
	pubConn, err := nats.Connect(e.nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	cfg := socketgw.Config{
		RunDir:           filepath.Join(e.dir, "run"),
		Logger:           log,
		Events:           events.NewPublisher(pubConn, "node-test", log),
		HandshakeTimeout: 2 * time.Second,
		WriteTimeout:     2 * time.Second,
		ServerVersion:    "test-1",
	}
	if tweak != nil {
		tweak(&cfg)
	}
	gw, err := socketgw.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	t.Cleanup(func() {
		gw.Close()
		pubConn.Close()
		sub.Unsubscribe()
		if bytes.Contains([]byte(e.logs.String()), []byte(tokenHex(gw))) {
			t.Errorf("the session token appears in the log")
		}
	})
	return e
}

func tokenHex(gw *socketgw.Gateway) string {
	tok := socketgw.TokenOf(gw)
	return tok.Hex()
}

func (e *env) bind(t testing.TB, capsule, socket string) string {
	t.Helper()
	if err := e.gw.Bind(capsule, socket); err != nil {
		t.Fatal(err)
	}
	return socketgw.SocketPath(filepath.Join(e.dir, "run"), socket)
}

func (e *env) dial(t testing.TB, path string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, path, e.gw.TokenPath())
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// settle waits until the recorder saw wantConnects connects and as many
// disconnects for instance.
func (e *env) settle(t testing.TB, instance string, wantConnects int) {
	t.Helper()
	eventually(t, 5*time.Second, "connects minus disconnects returns to 0", func() bool {
		c, d := e.rec.balance(instance)
		return c == wantConnects && d == wantConnects
	})
}

// echoInstance plays the instance side from Go: it accepts every stream
// of the listener and echoes each frame, as a capsule would through the
// net_* host functions.
type echoInstance struct {
	s      *socketgw.Session
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	accepted []int32
	closed   []int32
	err      error
}

func startEcho(t testing.TB, s *socketgw.Session, socket string) *echoInstance {
	t.Helper()
	l, err := s.Bind(socket)
	if err != nil {
		t.Fatalf("Bind(%q): %v", socket, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &echoInstance{s: s, cancel: cancel, done: make(chan struct{})}
	go in.loop(ctx, l)
	t.Cleanup(in.stop)
	return in
}

func (in *echoInstance) stop() {
	in.cancel()
	<-in.done
}

func (in *echoInstance) loop(ctx context.Context, l int32) {
	defer close(in.done)
	out := make([]abi.Ready, 16)
	buf := make([]byte, abi.MaxFrame)
	for {
		n, err := in.s.Wait(ctx, -1, out)
		if err != nil {
			if !errors.Is(err, abi.ErrUnloading) {
				in.fail(err)
			}
			return
		}
		for _, r := range out[:n] {
			switch r.Kind {
			case abi.ReadyAccept:
				h, err := in.s.PollAccept(l)
				if err == nil {
					in.mu.Lock()
					in.accepted = append(in.accepted, h)
					in.mu.Unlock()
				} else if !errors.Is(err, abi.ErrPending) {
					in.fail(err)
				}
			case abi.ReadyFrame:
				k, err := in.s.Read(r.Handle, buf)
				if err != nil {
					continue
				}
				in.s.Write(ctx, r.Handle, buf[:k])
			case abi.ReadyClosed:
				in.mu.Lock()
				in.closed = append(in.closed, r.Handle)
				in.mu.Unlock()
			}
		}
	}
}

func (in *echoInstance) fail(err error) {
	in.mu.Lock()
	if in.err == nil {
		in.err = err
	}
	in.mu.Unlock()
}

func (in *echoInstance) acceptedCount() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.accepted)
}

// roundTrip sends p and expects it back.
func roundTrip(t testing.TB, c *client.Conn, p string) {
	t.Helper()
	if err := c.WriteFrame([]byte(p)); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := c.ReadFrame()
	c.SetDeadline(time.Time{})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != p {
		t.Fatalf("echo: got %q; want %q", got, p)
	}
}
