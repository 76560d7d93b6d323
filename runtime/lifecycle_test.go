package runtime

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/astrid-os/astrid-node/events"
)

const (
	helloSrc = "../capsules/hello"
	multiSrc = "testdata/capsules/multi" // every test capsule; its name picks the behaviour
)

func TestLoadRunUnload(t *testing.T) {
	t.Parallel()
	env := newEnv(t, true, func(c *Config) { c.DefaultIdleTimeout = 90 * time.Second })
	env.add(t, helloSrc, "hello", "")
	ctx := context.Background()

	info, err := env.r.Load(ctx, "hello", events.LoadRequest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Capsule != "hello" || len(info.Instance) != 36 || info.IdleTimeout != 90*time.Second {
		t.Fatalf("got info %+v; want capsule hello, a UUID, idle 90s", info)
	}

	// The guest ran: it logged its instance id, which it read through the
	// host, and its stdout reached the log.
	rec := env.logs.waitFor(t, "hello from instance "+info.Instance)
	if rec.Attrs["capsule"] != "hello" || rec.Attrs["instance"] != info.Instance {
		t.Errorf("got attrs %v; want capsule and instance", rec.Attrs)
	}
	env.logs.waitFor(t, "hello: stdout reaches the node log too")

	ev := env.waitEvent(t, events.SubjectLoaded, info.Instance)
	if p, ok := ev.Payload.(events.Loaded); !ok || p.Reason != events.LoadRequest ||
		p.IdleTimeoutMS != 90000 || ev.SourceID != info.Instance {
		t.Errorf("got loaded event %+v; want reason request, idle 90000ms", ev)
	}

	again, err := env.r.Load(ctx, "hello", events.LoadRequest)
	if !errors.Is(err, ErrAlreadyLoaded) || again.Instance != info.Instance {
		t.Errorf("second Load: got %v, %s; want ErrAlreadyLoaded, %s", err, again.Instance,
			info.Instance)
	}
	if l := env.r.List(); len(l) != 1 || l[0].Instance != info.Instance {
		t.Errorf("List: got %+v; want the one instance", l)
	}

	_, err = env.r.Unload(ctx, UnloadRequest{Capsule: "hello", Instance: "nope"})
	if !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Unload of another instance: got %v; want ErrNotLoaded", err)
	}

	res, err := env.r.Unload(ctx, UnloadRequest{Capsule: "hello", IfIdle: true,
		Reason: events.UnloadIdle})
	if err != nil || res.Instance != info.Instance || res.StreamsClosed != 0 {
		t.Fatalf("Unload: got %+v, %v; want the instance, 0 streams", res, err)
	}
	if l := env.r.List(); len(l) != 0 {
		t.Errorf("List after unload: got %+v; want none", l)
	}
	env.logs.waitFor(t, "hello: goodbye")
	ev = env.waitEvent(t, events.SubjectUnloaded, info.Instance)
	if p := ev.Payload.(events.Unloaded); p.Reason != events.UnloadIdle {
		t.Errorf("got unloaded reason %q; want idle", p.Reason)
	}

	if _, err := env.r.Unload(ctx, UnloadRequest{Capsule: "hello"}); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Unload when unloaded: got %v; want ErrNotLoaded", err)
	}
	if _, err := env.r.Load(ctx, "nope", events.LoadRequest); !errors.Is(err, ErrUnknownCapsule) {
		t.Errorf("Load unknown: got %v; want ErrUnknownCapsule", err)
	}

	// Reactivation instantiates the kept compiled module with a new id.
	next, err := env.r.Load(ctx, "hello", events.LoadActivation)
	if err != nil || next.Instance == info.Instance {
		t.Fatalf("reload: got %+v, %v; want a new instance", next, err)
	}
}

func TestConcurrentLoadsInstantiateOnce(t *testing.T) {
	t.Parallel()
	env := newEnv(t, false)
	env.add(t, helloSrc, "hello", "")

	const n = 8
	var wg sync.WaitGroup
	infos := make([]InstanceInfo, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			infos[i], errs[i] = env.r.Load(context.Background(), "hello", events.LoadRequest)
		}()
	}
	wg.Wait()

	started := 0
	for i := range n {
		switch {
		case errs[i] == nil:
			started++
		case !errors.Is(errs[i], ErrAlreadyLoaded):
			t.Errorf("Load %d: got %v; want nil or ErrAlreadyLoaded", i, errs[i])
		}
		if infos[i].Instance != infos[0].Instance {
			t.Errorf("Load %d: got instance %s; want %s", i, infos[i].Instance, infos[0].Instance)
		}
	}
	if started != 1 {
		t.Errorf("got %d instances started; want 1", started)
	}
}

// TestUnloadLatency unloads guests in three states: blocked in a host call
// (it must wake with ErrUnloading and return by itself), spinning in a
// loop and asleep in the Go runtime (both need the force-close after the
// grace period).
func TestUnloadLatency(t *testing.T) {
	t.Parallel()
	env := newEnv(t, true)
	cases := []struct {
		name, started, cooperative string
	}{
		{"block", "block: waiting", "block: woke with unloading"},
		{"busy", "busy: spinning", ""},
		{"sleep", "sleep: sleeping", ""},
	}
	for _, tc := range cases {
		env.add(t, multiSrc, tc.name, "")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := env.r.Load(context.Background(), tc.name, events.LoadRequest)
			if err != nil {
				t.Fatal(err)
			}
			env.logs.waitFor(t, tc.started)

			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), testGrace+10*time.Second)
			defer cancel()
			_, err = env.r.Unload(ctx, UnloadRequest{Capsule: tc.name})
			took := time.Since(start)
			if err != nil {
				t.Fatalf("Unload: %v", err)
			}
			t.Logf("%s: unload took %v (grace %v)", tc.name, took, testGrace)

			if tc.cooperative != "" {
				env.logs.waitFor(t, tc.cooperative)
			}
			ev := env.waitEvent(t, events.SubjectUnloaded, info.Instance)
			if p := ev.Payload.(events.Unloaded); p.Reason != events.UnloadRequest {
				t.Errorf("got reason %q; want request", p.Reason)
			}
			if len(env.r.List()) != 0 {
				t.Errorf("instance still listed after unload")
			}
		})
	}
	if n := env.exitCount(); n != 0 {
		t.Errorf("OnExit called %d times for requested unloads; want 0", n)
	}
}

// TestCrash: a trap, a panic, an exit and an allocation beyond the memory
// ceiling each end the instance as a crash; the node carries on.
func TestCrash(t *testing.T) {
	t.Parallel()
	env := newEnv(t, true)
	env.add(t, helloSrc, "hello", "")
	cases := []struct{ name, wantErr string }{
		{"trap", "trapped"},
		{"panic", "exited with code 2"},
		{"exit", "exited with code 3"},
		{"alloc", "exited with code"},
	}
	for _, tc := range cases {
		env.add(t, multiSrc, tc.name, "")
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := env.r.Load(context.Background(), tc.name, events.LoadRequest)
			if err != nil {
				t.Fatal(err)
			}
			ev := env.waitEvent(t, events.SubjectUnloaded, info.Instance)
			if p := ev.Payload.(events.Unloaded); p.Reason != events.UnloadCrash {
				t.Errorf("got reason %q; want crash", p.Reason)
			}
			eventually(t, 5*time.Second, "OnExit", func() bool { return env.exitCount() == i+1 })
			// OnExit runs before the teardown ends; the crash log line
			// comes last, after the instance left List.
			var crashLog *logRecord
			eventually(t, 5*time.Second, "crash log", func() bool {
				for _, r := range env.logs.find("capsule crashed") {
					if r.Attrs["instance"] == info.Instance {
						crashLog = &r
						return true
					}
				}
				return false
			})
			if len(env.r.List()) != 0 {
				t.Errorf("crashed instance still listed")
			}
			if e, _ := crashLog.Attrs["err"].(error); e == nil ||
				!strings.Contains(e.Error(), tc.wantErr) {
				t.Errorf("got crash err %v; want it to contain %q", crashLog.Attrs["err"],
					tc.wantErr)
			}
		})
	}
	if len(env.logs.find("alloc: allocated")) != 0 {
		t.Error("a 100 MB allocation succeeded under a 64 MiB ceiling")
	}

	// Another capsule still loads, and the crashed one can load again.
	if _, err := env.r.Load(context.Background(), "hello", events.LoadRequest); err != nil {
		t.Fatalf("loading hello after crashes: %v", err)
	}
	env.logs.waitFor(t, "hello from instance")
	if _, err := env.r.Load(context.Background(), "exit", events.LoadRequest); err != nil {
		t.Fatalf("reloading a crashed capsule: %v", err)
	}
}

func TestCloseUnloadsAll(t *testing.T) {
	// Registered first, so it runs after every other cleanup (NATS too).
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	env := newEnv(t, true)
	env.add(t, helloSrc, "hello", "")
	env.add(t, multiSrc, "busy", "")

	var ids []string
	for _, name := range []string{"hello", "busy"} {
		info, err := env.r.Load(context.Background(), name, events.LoadStart)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.Instance)
	}
	if err := env.r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		ev := env.waitEvent(t, events.SubjectUnloaded, id)
		if p := ev.Payload.(events.Unloaded); p.Reason != events.UnloadShutdown {
			t.Errorf("got reason %q; want shutdown", p.Reason)
		}
	}
	_, err := env.r.Load(context.Background(), "hello", events.LoadRequest)
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close: got %v; want ErrClosed", err)
	}
}

// TestLoadDuringUnload: a Load while the capsule's instance is stopping
// waits for it, so the old instance's unloaded event precedes the new
// one's loaded event.
func TestLoadDuringUnload(t *testing.T) {
	t.Parallel()
	env := newEnv(t, true)
	env.add(t, multiSrc, "busy", "")
	ctx := context.Background()
	old, err := env.r.Load(ctx, "busy", events.LoadRequest)
	if err != nil {
		t.Fatal(err)
	}
	env.logs.waitFor(t, "busy: spinning")

	done := make(chan error, 1)
	go func() {
		_, err := env.r.Unload(ctx, UnloadRequest{Capsule: "busy"})
		done <- err
	}()
	eventually(t, 5*time.Second, "the instance to be stopping", func() bool {
		env.r.mu.Lock()
		in := env.r.loaded["busy"]
		env.r.mu.Unlock()
		return in != nil && in.isStopping()
	})

	next, err := env.r.Load(ctx, "busy", events.LoadActivation)
	if err != nil || next.Instance == old.Instance {
		t.Fatalf("Load during unload: got %+v, %v; want a new instance", next, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	unloaded := env.waitEvent(t, events.SubjectUnloaded, old.Instance)
	loaded := env.waitEvent(t, events.SubjectLoaded, next.Instance)
	if unloaded.Seq > loaded.Seq {
		t.Errorf("got unloaded seq %d after loaded seq %d; want it before", unloaded.Seq,
			loaded.Seq)
	}
}

// TestDisconnectReason: the reason handed to Sockets.Close, which every
// open stream's disconnect event carries, follows the unload reason.
func TestDisconnectReason(t *testing.T) {
	cases := []struct{ unload, want string }{
		{events.UnloadIdle, events.ReasonCapsuleUnloaded},
		{events.UnloadRequest, events.ReasonCapsuleUnloaded},
		{events.UnloadShutdown, events.ReasonNodeShutdown},
		{events.UnloadCrash, events.ReasonCapsuleCrashed},
	}
	for _, tc := range cases {
		if got := disconnectReason(tc.unload); got != tc.want {
			t.Errorf("disconnectReason(%q): got %q; want %q", tc.unload, got, tc.want)
		}
	}
}
