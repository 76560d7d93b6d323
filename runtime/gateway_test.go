package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/internal/capsuletest"
	"github.com/astrid-os/astrid-node/socketgw"
	"github.com/astrid-os/astrid-node/socketgw/client"
)

// TestEchoThroughGateway runs the echo capsule behind the real socket
// gateway: clients on a real Unix socket get their frames back, an idle
// unload is refused while streams are open, and an unload ends each open
// stream with exactly one capsule_unloaded disconnect.
func TestEchoThroughGateway(t *testing.T) {
	t.Parallel()
	runDir := filepath.Join(t.TempDir(), "run")
	var gw *socketgw.Gateway
	env := newEnv(t, true, func(c *Config) {
		c.Sockets = func(capsule, instance string) Sockets { return gw.Attach(capsule, instance) }
	})
	g, err := socketgw.New(socketgw.Config{RunDir: runDir, Logger: env.r.log,
		Events: env.r.cfg.Events})
	if err != nil {
		t.Fatal(err)
	}
	gw = g
	t.Cleanup(func() { gw.Close() })
	if err := gw.Bind("echo", "echo"); err != nil {
		t.Fatal(err)
	}

	manifest, err := os.ReadFile("../capsules/echo/Capsule.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := capsuletest.Package(t, "../capsules/echo", string(manifest))
	if _, err := env.r.Add(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	info, err := env.r.Load(context.Background(), "echo", events.LoadStart)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const clients = 3
	var conns []*client.Conn
	for i := range clients {
		c, err := client.Dial(ctx, socketgw.SocketPath(runDir, "echo"), gw.TokenPath())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		for j := range 20 {
			msg := fmt.Sprintf("client %d frame %d", i, j)
			if err := c.WriteFrame([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			got, err := c.ReadFrame()
			if err != nil || string(got) != msg {
				t.Fatalf("got %q, %v; want %q", got, err, msg)
			}
		}
	}
	if l := env.r.List(); len(l) != 1 || l[0].Streams != clients {
		t.Fatalf("List: got %+v; want echo with %d streams", l, clients)
	}

	_, err = env.r.Unload(ctx, UnloadRequest{Capsule: "echo", IfIdle: true,
		Reason: events.UnloadIdle})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("idle unload with open streams: got %v; want ErrBusy", err)
	}

	res, err := env.r.Unload(ctx, UnloadRequest{Capsule: "echo"})
	if err != nil || res.StreamsClosed != clients {
		t.Fatalf("Unload: got %+v, %v; want %d streams closed", res, err, clients)
	}
	for _, c := range conns {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.ReadFrame(); !errors.Is(err, io.EOF) {
			t.Errorf("client read after unload: got %v; want EOF", err)
		}
	}
	ev := env.waitEvent(t, events.SubjectUnloaded, info.Instance)
	if p := ev.Payload.(events.Unloaded); p.StreamsClosed != clients {
		t.Errorf("unloaded event: got %d streams closed; want %d", p.StreamsClosed, clients)
	}

	var disc int
	eventually(t, 5*time.Second, "disconnect events", func() bool {
		env.evMu.Lock()
		defer env.evMu.Unlock()
		disc = 0
		for _, ev := range env.events {
			if ev.Topic != events.SubjectDisconnect || ev.Instance != info.Instance {
				continue
			}
			disc++
			if p := ev.Payload.(events.Disconnect); p.Reason != events.ReasonCapsuleUnloaded {
				t.Errorf("disconnect reason %q; want capsule_unloaded", p.Reason)
			}
		}
		return disc >= clients
	})
	if disc != clients {
		t.Errorf("got %d disconnects; want %d", disc, clients)
	}
}
