package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/socketgw/client"
)

// Dial opens a stream to the node's socket named name with the Go client.
func (n *Node) Dial(t testing.TB, name string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), natsTimeout)
	defer cancel()
	c, err := client.Dial(ctx, filepath.Join(n.RunDir(), name+".sock"),
		filepath.Join(n.RunDir(), "system.token"))
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoOnce sends p on c and checks that the same frame comes back.
func echoOnce(t testing.TB, c *client.Conn, p string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(natsTimeout))
	if err := c.WriteFrame([]byte(p)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := c.ReadFrame()
	if err != nil || string(got) != p {
		t.Fatalf("echo: got %q, %v; want %q", got, err, p)
	}
}

// story renders events as "subject:detail" for ordered comparison; the
// detail is the disconnect, load or unload reason. Heartbeats are left out.
func story(msgs []Msg) []string {
	var out []string
	for _, m := range msgs {
		if m.Subject == events.SubjectHeartbeat {
			continue
		}
		ev, err := decodeMsg(m)
		if err != nil {
			out = append(out, m.Subject+":malformed")
			continue
		}
		switch p := ev.Payload.(type) {
		case events.Disconnect:
			out = append(out, "disconnect:"+p.Reason)
		case events.Loaded:
			out = append(out, "loaded:"+p.Reason)
		case events.Unloaded:
			out = append(out, "unloaded:"+p.Reason)
		case events.Connect:
			out = append(out, "connected")
		default:
			out = append(out, m.Subject)
		}
	}
	return out
}

func decodeMsg(m Msg) (events.Event, error) {
	ev, err := events.DecodeBody(m.Body)
	if err != nil {
		return ev, err
	}
	ev.Instance = m.Header[events.HeaderInstance]
	ev.Node = m.Header[events.HeaderNode]
	return ev, nil
}

// storySubject is one subscription for every client, capsule and node
// event. One subscription matters: nats.go delivers each subscription on
// its own goroutine, so the CLI interleaves two subscriptions' messages
// in no particular order, while one keeps the node's publish order.
const storySubject = "*.v1.*"

// waitStory waits until the subscription printed want (in order, probes
// and heartbeats aside) and returns those messages.
func waitStory(t *testing.T, sub *Sub, want []string) []Msg {
	t.Helper()
	var msgs []Msg
	WaitFor(t, fmt.Sprintf("events %v", want), natsTimeout, func() bool {
		msgs = msgs[:0]
		for _, m := range sub.Msgs() {
			if m.Subject != events.SubjectHeartbeat {
				msgs = append(msgs, m)
			}
		}
		if len(msgs) < len(want) {
			return false
		}
		// The CLI may be halfway through printing the last message: wait
		// until every message wanted has its whole body.
		for _, m := range msgs[:len(want)] {
			if _, err := decodeMsg(m); err != nil {
				return false
			}
		}
		return true
	})
	if got := story(msgs); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events in order:\n got  %v\n want %v", got, want)
	}
	return msgs
}

// TestIdleUnloadThenActivation is the whole scale-to-zero story as a user
// watching `nats sub` sees it: a stream, its end, an idle unload, and the
// next client bringing the capsule back on the same socket.
func TestIdleUnloadThenActivation(t *testing.T) {
	n := StartNode(t, append(CapsuleFlags(t, "echo"),
		"--idle-timeout", "400ms", "--heartbeat", "200ms")...)
	sub := n.StartSub(storySubject)

	c := n.Dial(t, "echo")
	echoOnce(t, c, "first")
	c.Close()
	waitStory(t, sub, []string{"connected", "disconnect:peer_closed", "unloaded:idle"})

	c = n.Dial(t, "echo")
	echoOnce(t, c, "second")
	c.Close()
	msgs := waitStory(t, sub, []string{"connected", "disconnect:peer_closed", "unloaded:idle",
		"loaded:activation", "connected", "disconnect:peer_closed", "unloaded:idle"})

	first, second := msgs[0].Header[events.HeaderInstance], msgs[4].Header[events.HeaderInstance]
	if first == "" || first == second {
		t.Errorf("instances %q then %q; want a fresh instance after activation", first, second)
	}
	if code := n.Stop(); code != 0 {
		t.Errorf("node exit %d; want 0", code)
	}
}

// TestNoIdleUnloadWhileStreamLingers holds one stream open, silent, for
// several idle timeouts: the capsule must stay. Once it closes, the
// unload follows.
func TestNoIdleUnloadWhileStreamLingers(t *testing.T) {
	const timeout = 300 * time.Millisecond
	n := StartNode(t, append(CapsuleFlags(t, "echo"),
		"--idle-timeout", timeout.String(), "--heartbeat", "100ms")...)
	sub := n.StartSub(storySubject)

	c := n.Dial(t, "echo")
	echoOnce(t, c, "hold")
	// Several timeouts and heartbeats pass with the stream open. A wrong
	// unload would show up as an event; there is nothing to poll for, so
	// this is the one place a test waits for time itself to pass.
	time.Sleep(5 * timeout)
	if got := story(sub.Msgs()); strings.Join(got, " ") != "connected" {
		t.Fatalf("events with a stream open: %v; want only connected", got)
	}
	echoOnce(t, c, "still here")
	c.Close()
	waitStory(t, sub, []string{"connected", "disconnect:peer_closed", "unloaded:idle"})
}

// TestActivationStorm: 20 clients connect at the same moment to an
// unloaded capsule. All are served, none refused, and the capsule loads
// once.
func TestActivationStorm(t *testing.T) {
	n := StartNode(t, append(CapsuleFlags(t, "echo"),
		"--idle-timeout", "300ms", "--heartbeat", "100ms", "--max-streams", "8")...)
	sub := n.StartSub("capsule.v1.>")
	waitStory(t, sub, []string{"unloaded:idle"})

	const clients = 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), natsTimeout)
			defer cancel()
			c, err := client.Dial(ctx, filepath.Join(n.RunDir(), "echo.sock"),
				filepath.Join(n.RunDir(), "system.token"))
			if err != nil {
				errs <- fmt.Errorf("client %d: dial: %w", i, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(natsTimeout))
			msg := fmt.Sprintf("client %d", i)
			if err := c.WriteFrame([]byte(msg)); err != nil {
				errs <- fmt.Errorf("client %d: write: %w", i, err)
				return
			}
			if got, err := c.ReadFrame(); err != nil || string(got) != msg {
				errs <- fmt.Errorf("client %d: got %q, %v", i, got, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Everyone left, so the capsule goes idle again; by then any second
	// load would have been published too.
	msgs := waitStory(t, sub, []string{"unloaded:idle", "loaded:activation", "unloaded:idle"})
	if len(msgs) != 3 {
		t.Errorf("%d lifecycle events; want 3 (one activation)", len(msgs))
	}
}

// TestExitWhenIdle: with --exit-when-idle the node publishes the unloads
// and exits 0 once no capsule has had a stream for that long.
func TestExitWhenIdle(t *testing.T) {
	n := StartNode(t, append(CapsuleFlags(t, "echo", "hello"),
		"--exit-when-idle", "500ms", "--idle-timeout", "1h")...)
	sub := n.StartSub("capsule.v1.unloaded")
	c := n.Dial(t, "echo")
	echoOnce(t, c, "keep me")
	time.Sleep(time.Second) // longer than the period: the stream keeps the node up
	if n.Exited() {
		t.Fatal("node exited while a stream was open")
	}
	c.Close()

	if code := n.Wait(natsTimeout); code != 0 {
		t.Fatalf("node exit %d; want 0", code)
	}
	// Both capsules' unloads were published before the node exited.
	waitStory(t, sub, []string{"unloaded:idle", "unloaded:idle"})
}

// TestStandaloneMonitorRestart kills a standalone idle monitor (SIGKILL)
// while a client holds a stream and restarts it: no wrong unload of the
// busy capsule, and the idle one is not forgotten.
func TestStandaloneMonitorRestart(t *testing.T) {
	const timeout = 600 * time.Millisecond
	n := StartNode(t, append(CapsuleFlags(t, "echo", "hello"), "--idle-monitor", "off",
		"--idle-timeout", timeout.String(), "--heartbeat", "100ms")...)
	sub := n.StartSub("capsule.v1.>")
	c := n.Dial(t, "echo")
	echoOnce(t, c, "busy")

	monitor := func() *exec.Cmd {
		cmd := exec.Command(Binary(t), "idle", "--nats-url", n.URL)
		var errOut Buffer
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		WaitFor(t, "idle monitor running", natsTimeout, func() bool {
			return strings.Contains(errOut.String(), "idle monitor running")
		})
		return cmd
	}
	m := monitor()
	m.Process.Kill()
	m.Wait()
	monitor()

	// hello has had no stream since it loaded: the restarted monitor
	// unloads it. echo's stream is still open: it stays.
	msgs := waitStory(t, sub, []string{"unloaded:idle"})
	if got := msgs[0].Header[events.HeaderCapsule]; got != "hello" {
		t.Fatalf("unloaded %q; want hello", got)
	}
	time.Sleep(3 * timeout) // a wrong unload of echo would be published by now
	if got := story(sub.Msgs()); len(got) != 1 {
		t.Fatalf("events with echo busy: %v; want only hello's unload", got)
	}
	echoOnce(t, c, "still served")
	c.Close()
	msgs = waitStory(t, sub, []string{"unloaded:idle", "unloaded:idle"})
	if got := msgs[1].Header[events.HeaderCapsule]; got != "echo" {
		t.Fatalf("second unload %q; want echo", got)
	}
}
