package node

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
)

func TestEmbeddedHeartbeat(t *testing.T) {
	cfg := testConfig(t)
	want := []events.InstanceStatus{
		{Capsule: "echo", Instance: "0b1c", Streams: 2, IdleTimeoutMS: 300000},
	}
	cfg.Instances = func() []events.InstanceStatus { return want }
	n := startNode(t, cfg)

	if !strings.HasPrefix(n.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("ClientURL = %q; want nats://127.0.0.1:PORT", n.ClientURL())
	}
	ch := collect(t, connect(t, n.ClientURL()), events.SubjectHeartbeat)

	var last uint64
	for range 2 {
		ev := next(t, ch)
		hb, ok := ev.Payload.(events.Heartbeat)
		if !ok {
			t.Fatalf("payload %T; want Heartbeat", ev.Payload)
		}
		if hb.Node != n.ID() || ev.Node != n.ID() || ev.SourceID != n.ID() {
			t.Errorf("heartbeat node %q header %q source %q; want %q",
				hb.Node, ev.Node, ev.SourceID, n.ID())
		}
		if hb.IntervalMS != 50 {
			t.Errorf("interval_ms = %d; want 50", hb.IntervalMS)
		}
		if len(hb.Instances) != 1 || hb.Instances[0] != want[0] {
			t.Errorf("instances = %+v; want %+v", hb.Instances, want)
		}
		if ev.Seq <= last {
			t.Errorf("seq %d after %d; want increasing", ev.Seq, last)
		}
		last = ev.Seq
	}
}

func TestHeartbeatWithoutInstances(t *testing.T) {
	n := startNode(t, testConfig(t))
	ch := collect(t, connect(t, n.ClientURL()), events.SubjectHeartbeat)

	hb := next(t, ch).Payload.(events.Heartbeat)
	if hb.Instances == nil || len(hb.Instances) != 0 {
		t.Errorf("instances = %#v; want an empty list", hb.Instances)
	}
}

func TestShutdownStopsEverything(t *testing.T) {
	n, err := Start(context.Background(), testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WriteReady(); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(n.RunDir(), ReadyFile)
	if got := fileMode(t, ready); got != 0o600 {
		t.Errorf("ready file mode %v; want 0600", got)
	}
	var r Ready
	data, _ := os.ReadFile(ready)
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("ready file %q: %v", data, err)
	}
	if r.Node != n.ID() || r.NATSURL != n.ClientURL() || r.PID != os.Getpid() {
		t.Errorf("ready = %+v; want node %s url %s pid %d", r, n.ID(), n.ClientURL(), os.Getpid())
	}

	addr := strings.TrimPrefix(n.ClientURL(), "nats://")
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file after shutdown: %v; want it removed", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("server still accepts on %s after shutdown", addr)
	}
	if !n.Conn().IsClosed() {
		t.Error("node connection still open after shutdown")
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestShutdownDrainsPublishedEvents(t *testing.T) {
	n, err := Start(context.Background(), testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ch := collect(t, connect(t, n.ClientURL()), "capsule.v1.>")

	const count = 200
	for i := range count {
		if err := n.Publisher().Unloaded("echo", "i1", events.UnloadShutdown, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The server is gone, so whatever arrives was delivered before it
	// stopped: drain must have flushed all of it.
	for i := range count {
		ev := next(t, ch)
		if got := ev.Payload.(events.Unloaded).StreamsClosed; got != i {
			t.Fatalf("event %d carries %d; want %d", i, got, i)
		}
	}
}

func TestListenNone(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATSListen = ListenNone
	n := startNode(t, cfg)

	if n.ClientURL() != "" {
		t.Errorf("ClientURL = %q; want empty without a listener", n.ClientURL())
	}
	ch := collect(t, n.Conn(), events.SubjectHeartbeat)
	if ev := next(t, ch); ev.Node != n.ID() {
		t.Errorf("heartbeat from %q; want %q", ev.Node, n.ID())
	}
}

func TestNodeIDPersisted(t *testing.T) {
	cfg := testConfig(t)
	first, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	id := first.ID()
	first.Shutdown(context.Background())

	if got := fileMode(t, filepath.Join(cfg.Home, NodeIDFile)); got != 0o600 {
		t.Errorf("node.id mode %v; want 0600", got)
	}
	second := startNode(t, cfg)
	if second.ID() != id {
		t.Errorf("restarted node id %q; want persisted %q", second.ID(), id)
	}
}

func TestConfiguredNodeIDWins(t *testing.T) {
	cfg := testConfig(t)
	cfg.NodeID = "node-a"
	if n := startNode(t, cfg); n.ID() != "node-a" {
		t.Errorf("ID = %q; want node-a", n.ID())
	}
}

func TestCorruptNodeIDFile(t *testing.T) {
	cfg := testConfig(t)
	os.WriteFile(filepath.Join(cfg.Home, NodeIDFile), []byte("bad.id>\n"), 0o600)
	_, err := Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "node.id") {
		t.Fatalf("Start with a corrupt node.id: %v; want an error naming the file", err)
	}
}

func TestRunDirMadePrivate(t *testing.T) {
	cfg := testConfig(t)
	run := filepath.Join(cfg.Home, RunDirName)
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(run, 0o755)
	n := startNode(t, cfg)

	if got := fileMode(t, n.RunDir()); got != 0o700 {
		t.Errorf("run dir mode %v; want 0700", got)
	}
}

func TestHomeNotUsable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)

	for _, home := range []string{file, filepath.Join(file, "home")} {
		cfg := testConfig(t)
		cfg.Home = home
		_, err := Start(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), home) {
			t.Errorf("Start with home %s: %v; want an error naming it", home, err)
		}
	}
}

func TestTwoNodesOneHome(t *testing.T) {
	cfg := testConfig(t)
	startNode(t, cfg)

	_, err := Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "another node") {
		t.Fatalf("second node on the same home: %v; want 'another node' error", err)
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	cfg := testConfig(t)
	cfg.NATSListen = l.Addr().String()
	start := time.Now()
	_, err = Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Start on a busy port: %v; want a port-in-use error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("failing took %v; want it prompt", d)
	}
	// The failed start must release the home.
	cfg.NATSListen = "127.0.0.1:0"
	startNode(t, cfg)
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no home", func(c *Config) { c.Home = "" }, "home"},
		{"cluster without listener", func(c *Config) {
			c.NATSListen, c.ClusterListen = ListenNone, "127.0.0.1:0"
		}, "client listener"},
		{"routes without cluster", func(c *Config) {
			c.Routes = []string{"nats://127.0.0.1:6222"}
		}, "cluster listen"},
		{"bad route", func(c *Config) {
			c.ClusterListen, c.Routes = "127.0.0.1:0", []string{"127.0.0.1:6222"}
		}, "route"},
		{"cluster with url", func(c *Config) {
			c.NATSURL, c.ClusterListen = "nats://127.0.0.1:4222", "127.0.0.1:0"
		}, "embedded"},
		{"creds without url", func(c *Config) { c.NATSCreds = "x.creds" }, "NATS URL"},
		{"bad listen", func(c *Config) { c.NATSListen = "localhost" }, "listen"},
		{"bad port", func(c *Config) { c.NATSListen = "127.0.0.1:99999" }, "port"},
		{"negative heartbeat", func(c *Config) { c.Heartbeat = -time.Second }, "heartbeat"},
		{"bad node id", func(c *Config) { c.NodeID = "a.b" }, "node id"},
		{"long node id", func(c *Config) { c.NodeID = strings.Repeat("a", 65) }, "node id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.edit(&cfg)
			_, err := Start(context.Background(), cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
}

func TestServerLoggerFatalDoesNotExit(t *testing.T) {
	l := newServerLogger(testLogger(t))
	l.Fatalf("first %d", 1)
	l.Fatalf("second %d", 2) // must not block on the full channel

	if got := <-l.fatal; got != "first 1" {
		t.Errorf("fatal = %q; want %q", got, "first 1")
	}
}

func TestConcurrentPublishersKeepSeqOrder(t *testing.T) {
	n := startNode(t, testConfig(t))
	ch := collect(t, connect(t, n.ClientURL()), "client.v1.>")

	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				n.Publisher().Connected("echo", "i1", int32(w))
			}
		})
	}
	wg.Wait()

	var last uint64
	for range workers * each {
		ev := next(t, ch)
		if ev.Seq <= last {
			t.Fatalf("seq %d after %d; want increasing", ev.Seq, last)
		}
		last = ev.Seq
	}
}
