package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/internal/capsuletest"
	"github.com/astrid-os/astrid-node/socketgw"
	"github.com/astrid-os/astrid-node/socketgw/client"
)

// startHost runs a node with the echo capsule (its manifest's idle
// timeout dropped, so cfg.IdleTimeout applies) in-process, so that the
// host's wiring runs under the race detector.
func startHost(t *testing.T, cfg HostConfig) (*Node, *Host) {
	t.Helper()
	manifest, err := os.ReadFile("../capsules/echo/Capsule.toml")
	if err != nil {
		t.Fatal(err)
	}
	manifest = regexp.MustCompile(`(?ms)^\[lifecycle\].*`).ReplaceAll(manifest, nil)
	caps := t.TempDir()
	pkg := capsuletest.Package(t, "../capsules/echo", string(manifest))
	if err := os.Rename(pkg, filepath.Join(caps, "echo")); err != nil {
		t.Fatal(err)
	}

	n := startNode(t, testConfig(t))
	cfg.CapsulesDir, cfg.CacheDir = caps, capsuletest.CacheDir(t)
	h, err := StartHost(context.Background(), n, cfg)
	if err != nil {
		t.Fatalf("StartHost: %v", err)
	}
	// Registered after startNode's cleanup, so it runs first.
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("Host.Close: %v", err)
		}
	})
	return n, h
}

func dialEcho(t *testing.T, n *Node) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Dial(ctx, socketgw.SocketPath(n.RunDir(), "echo"),
		filepath.Join(n.RunDir(), socketgw.TokenFile))
}

func echo(c *client.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteFrame([]byte(msg)); err != nil {
		return err
	}
	got, err := c.ReadFrame()
	if err == nil && string(got) != msg {
		err = fmt.Errorf("echo %q; want %q", got, msg)
	}
	return err
}

// TestHostIdleUnloadAndActivationStorm: the in-node idle monitor unloads
// the idle capsule, then 20 clients at once bring it back with one load.
func TestHostIdleUnloadAndActivationStorm(t *testing.T) {
	n, h := startHost(t, HostConfig{IdleTimeout: 200 * time.Millisecond,
		IdleMonitor: IdleMonitorLocal, MaxStreams: 8})
	lifecycle := collect(t, connect(t, n.ClientURL()), "capsule.v1.>")

	if ev := next(t, lifecycle); ev.Topic != events.SubjectUnloaded ||
		ev.Payload.(events.Unloaded).Reason != events.UnloadIdle {
		t.Fatalf("first lifecycle event %s %+v; want an idle unload", ev.Topic, ev.Payload)
	}
	if got := h.Instances(); len(got) != 0 {
		t.Fatalf("instances after the idle unload: %+v; want none", got)
	}

	const clients = 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialEcho(t, n)
			if err == nil {
				err = echo(c, fmt.Sprint("client ", i))
				c.Close()
			}
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	ev := next(t, lifecycle)
	if p, ok := ev.Payload.(events.Loaded); !ok || p.Reason != events.LoadActivation {
		t.Fatalf("after the storm: %s %+v; want one activation", ev.Topic, ev.Payload)
	}
	// The clients left; the next lifecycle event must be the idle unload,
	// not a second load.
	if ev := next(t, lifecycle); ev.Topic != events.SubjectUnloaded {
		t.Fatalf("then %s %+v; want the idle unload", ev.Topic, ev.Payload)
	}
}

// TestHostExitWhenIdle: with ExitWhenIdle the host publishes the unloads
// and then closes Idle.
func TestHostExitWhenIdle(t *testing.T) {
	n, h := startHost(t, HostConfig{ExitWhenIdle: 200 * time.Millisecond,
		IdleMonitor: IdleMonitorOff})
	unloads := collect(t, connect(t, n.ClientURL()), events.SubjectUnloaded)
	c, err := dialEcho(t, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c, "keep the node up"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Idle():
		t.Fatal("Idle closed while a stream was open")
	case <-time.After(600 * time.Millisecond):
	}
	c.Close()

	select {
	case <-h.Idle():
	case <-time.After(10 * time.Second):
		t.Fatal("Idle not closed 10s after the last stream ended")
	}
	if ev := next(t, unloads); ev.Payload.(events.Unloaded).Reason != events.UnloadIdle {
		t.Fatalf("unload before exit: %+v; want reason idle", ev.Payload)
	}
}

// TestHostCloseEndsStreams: closing the host ends open streams with
// node_shutdown and unloads with reason shutdown.
func TestHostCloseEndsStreams(t *testing.T) {
	n, h := startHost(t, HostConfig{IdleMonitor: IdleMonitorOff})
	evs := collect(t, connect(t, n.ClientURL()), "*.v1.*")
	c, err := dialEcho(t, n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c, "hi"); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	var disconnect, unloaded bool
	for !disconnect || !unloaded {
		switch p := next(t, evs).Payload.(type) {
		case events.Disconnect:
			disconnect = true
			if p.Reason != events.ReasonNodeShutdown {
				t.Errorf("disconnect reason %q; want node_shutdown", p.Reason)
			}
		case events.Unloaded:
			unloaded = true
			if p.Reason != events.UnloadShutdown || p.StreamsClosed != 1 {
				t.Errorf("unloaded %+v; want shutdown with 1 stream closed", p)
			}
		}
	}
}
