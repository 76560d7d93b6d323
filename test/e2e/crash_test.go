package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/socketgw/client"
)

// TestCrashThenReactivation: a capsule that traps mid-stream ends that
// stream with capsule_crashed and publishes its unload (reason crash); the
// node lives on and the next client brings the capsule back.
func TestCrashThenReactivation(t *testing.T) {
	n := StartNode(t, append(TestCapsuleFlags(t, "testdata/crashy", "crashy"),
		"--idle-timeout", "0")...)
	sub := n.StartSub(storySubject)

	c := n.Dial(t, "crashy")
	echoOnce(t, c, "fine")
	if err := c.WriteFrame([]byte("crash")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadFrame(); err == nil {
		t.Fatalf("read after the crash: %q; want the stream ended", got)
	}
	waitStory(t, sub, []string{"connected", "disconnect:capsule_crashed", "unloaded:crash"})

	c = n.Dial(t, "crashy")
	echoOnce(t, c, "back")
	c.Close()
	waitStory(t, sub, []string{"connected", "disconnect:capsule_crashed", "unloaded:crash",
		"loaded:activation", "connected", "disconnect:peer_closed"})
	if code := n.Stop(); code != 0 {
		t.Errorf("node exit %d; want 0", code)
	}
}

// TestCrashOnLoadBacksOff: a capsule that crashes as soon as it loads,
// with a client waiting for it, is reactivated again and again, but with
// growing pauses, and the node stays up.
func TestCrashOnLoadBacksOff(t *testing.T) {
	n := StartNode(t, append(TestCapsuleFlags(t, "testdata/crashy", "crashload"),
		"--idle-timeout", "0")...)
	sub := n.StartSub("capsule.v1.loaded")

	// The handshake is the gateway's: it succeeds, and the stream waits in
	// the queue for an instance that never stays up.
	ctx, cancel := context.WithTimeout(context.Background(), natsTimeout)
	defer cancel()
	c, err := client.Dial(ctx, filepath.Join(n.RunDir(), "crashload.sock"),
		filepath.Join(n.RunDir(), "system.token"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()

	const loads = 4
	msgs := sub.Wait(loads, natsTimeout)
	var at []time.Time
	for _, m := range msgs[:loads] {
		ev, err := decodeMsg(m)
		if err != nil {
			t.Fatal(err)
		}
		if p := ev.Payload.(events.Loaded); p.Reason != events.LoadActivation {
			t.Fatalf("load reason %q; want activation", p.Reason)
		}
		at = append(at, ev.Timestamp)
	}
	// Pauses double from 100ms: 100, 200, 400, 800ms. Allow for the time
	// a load itself takes, but insist that they grow.
	for i := 2; i < loads; i++ {
		prev, gap := at[i-1].Sub(at[i-2]), at[i].Sub(at[i-1])
		if gap < 90*time.Millisecond<<(i-1) || gap < prev {
			t.Errorf("pause %d is %v after %v; want it to double from 100ms", i, gap, prev)
		}
	}
	if n.Exited() {
		t.Fatal("node exited during the crash loop")
	}
	if code := n.Stop(); code != 0 {
		t.Errorf("node exit %d; want 0", code)
	}
}
