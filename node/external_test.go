package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/astrid-os/astrid-node/events"
)

// runServer starts a standalone nats-server that plays an existing NATS
// deployment.
func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	if opts == nil {
		opts = &server.Options{}
	}
	opts.Host, opts.NoSigs, opts.NoLog = "127.0.0.1", true, true
	if opts.Port == 0 {
		opts.Port = -1
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("test NATS server not ready")
	}
	t.Cleanup(func() { stopServer(s) })
	return s
}

func externalConfig(t *testing.T, url string) Config {
	cfg := testConfig(t)
	cfg.NATSListen = ""
	cfg.NATSURL = url
	cfg.ConnectWait = 2 * time.Second
	cfg.ReconnectWait = 20 * time.Millisecond
	return cfg
}

func TestExternalServer(t *testing.T) {
	s := runServer(t, nil)
	n := startNode(t, externalConfig(t, s.ClientURL()))

	if n.Server() != nil {
		t.Error("a node on an external server started its own")
	}
	if n.ClientURL() != s.ClientURL() {
		t.Errorf("ClientURL = %q; want %q", n.ClientURL(), s.ClientURL())
	}
	ch := collect(t, connect(t, s.ClientURL()), events.SubjectHeartbeat)
	if ev := next(t, ch); ev.Node != n.ID() {
		t.Errorf("heartbeat from %q; want %q", ev.Node, n.ID())
	}
}

func TestExternalUnreachable(t *testing.T) {
	cfg := externalConfig(t, "nats://alice:s3cret@"+hostPort(freePort(t)))
	cfg.ConnectWait = 300 * time.Millisecond

	start := time.Now()
	_, err := Start(context.Background(), cfg)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "cannot reach NATS") {
		t.Fatalf("got %v; want a 'cannot reach NATS' error", err)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "alice") {
		t.Errorf("error %q leaks the credentials", err)
	}
	if took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("gave up after %v; want about the 300ms connect wait", took)
	}
}

func TestExternalServerStartsLate(t *testing.T) {
	port := freePort(t)
	cfg := externalConfig(t, "nats://"+hostPort(port))

	go func() {
		time.Sleep(300 * time.Millisecond)
		runServer(t, &server.Options{Port: port})
	}()
	n := startNode(t, cfg)
	if !n.Conn().IsConnected() {
		t.Error("node not connected after Start returned")
	}
}

func TestExternalWrongPassword(t *testing.T) {
	s := runServer(t, &server.Options{Username: "node", Password: "right"})
	cfg := externalConfig(t, s.ClientURL())
	cfg.NATSUser, cfg.NATSPassword = "node", "wrong"

	start := time.Now()
	_, err := Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("got %v; want the server's refusal", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q leaks the password", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("refusal took %v; want no retrying on bad credentials", took)
	}

	cfg.NATSPassword = "right"
	startNode(t, cfg)
}

// TestExternalOutageLosesNothing stops the external server, publishes
// while it is down, restarts it on the same port and checks a subscriber
// gets every event: nats.go buffers them and flushes on reconnect.
//
// The node reaches the server through a gate (a TCP forwarder) that stays
// shut until the subscriber is back, because core NATS delivers only to
// subscriptions that exist when a message arrives.
func TestExternalOutageLosesNothing(t *testing.T) {
	port := freePort(t)
	s := runServer(t, &server.Options{Port: port})
	gate := newGate(t, hostPort(port))
	cfg := externalConfig(t, "nats://"+gate.addr)
	cfg.Heartbeat = time.Hour
	n := startNode(t, cfg)

	stopServer(s)
	gate.shut()
	waitFor(t, "node to notice the outage", func() bool { return !n.Conn().IsConnected() })

	const count = 50
	for i := range count {
		if err := n.Publisher().Disconnected("echo", "i1", int32(i),
			events.ReasonPeerClosed); err != nil {
			t.Fatalf("publish during outage: %v", err)
		}
	}

	runServer(t, &server.Options{Port: port})
	ch := collect(t, connect(t, "nats://"+hostPort(port)), events.SubjectDisconnect)
	gate.open()

	for i := range count {
		ev := next(t, ch)
		if ev.Stream != strconv.Itoa(i) {
			t.Fatalf("event %d is for stream %s; want %d (order kept)", i, ev.Stream, i)
		}
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// gate forwards TCP connections to target while open; shut drops every
// connection and refuses new ones, like a network outage.
type gate struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	l     net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

func newGate(t *testing.T, target string) *gate {
	g := &gate{t: t, addr: hostPort(freePort(t)), target: target}
	g.open()
	t.Cleanup(func() { g.shut(); g.wg.Wait() })
	return g
}

func (g *gate) open() {
	l, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatalf("gate listen: %v", err)
	}
	g.mu.Lock()
	g.l = l
	g.mu.Unlock()
	g.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", g.target)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns = append(g.conns, c, up)
			g.mu.Unlock()
			g.wg.Go(func() { io.Copy(up, c); up.Close() })
			g.wg.Go(func() { io.Copy(c, up); c.Close() })
		}
	})
}

func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.l != nil {
		g.l.Close()
		g.l = nil
	}
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

// countingHandler counts error records whose message is msg.
type countingHandler struct {
	slog.Handler
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelError && r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler         { return h }

// TestReconnectBufferOverflowLogged fills the reconnect buffer during an
// outage: the events that no longer fit fail and are logged as errors.
func TestReconnectBufferOverflowLogged(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 8 MiB of events")
	}
	s := runServer(t, nil)
	var errs atomic.Int64
	cfg := externalConfig(t, s.ClientURL())
	cfg.Heartbeat = time.Hour
	cfg.Logger = slog.New(countingHandler{
		Handler: slog.DiscardHandler, msg: "event publish failed", n: &errs,
	})
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}

	stopServer(s)
	waitFor(t, "node to notice the outage", func() bool { return !n.Conn().IsConnected() })

	big := strings.Repeat("x", 60<<10)
	var failed int
	for range 2 * reconnectBuf / len(big) {
		// A long capsule name makes each event big so the buffer fills
		// in a few hundred publishes.
		if err := n.Publisher().Loaded(big, "i1", events.LoadStart, 0); err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no publish failed after twice the reconnect buffer")
	}
	if got := errs.Load(); got != int64(failed) {
		t.Errorf("%d error logs for %d failed publishes; want one each", got, failed)
	}

	// The buffered events cannot be delivered: Shutdown says so.
	err = n.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "reconnecting") {
		t.Errorf("Shutdown during an outage: %v; want it to report the lost buffer", err)
	}
}
