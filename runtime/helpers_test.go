package runtime

import (
	"context"
	"fmt"
	"github.com/astrid-os/astrid-node/internal/natstest"
	"github.com/astrid-os/astrid-node/internal/poll"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/internal/capsuletest"
)

// testGrace is the unload grace period of test runtimes: long enough for a
// cooperative guest, short enough to keep force-close tests quick.
const testGrace = 300 * time.Millisecond

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, d, what, cond)
}

// logRecord is one captured log line with its attributes flattened.
type logRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]any
}

// logCapture is an slog.Handler that keeps every record, so tests can
// assert on what the node and the guests logged.
type logCapture struct {
	tb    testing.TB
	mu    *sync.Mutex
	recs  *[]logRecord
	attrs []slog.Attr
}

func newLogCapture(tb testing.TB) *logCapture {
	return &logCapture{tb: tb, mu: &sync.Mutex{}, recs: &[]logRecord{}}
}

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]any{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	*h.recs = append(*h.recs, rec)
	h.mu.Unlock()
	return nil
}

func (h *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &c
}

func (h *logCapture) WithGroup(string) slog.Handler { return h }

func (h *logCapture) records() []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]logRecord(nil), *h.recs...)
}

// find returns the records whose message contains substr.
func (h *logCapture) find(substr string) []logRecord {
	var out []logRecord
	for _, r := range h.records() {
		if strings.Contains(r.Msg, substr) {
			out = append(out, r)
		}
	}
	return out
}

func (h *logCapture) waitFor(t testing.TB, substr string) logRecord {
	t.Helper()
	var got []logRecord
	eventually(t, 10*time.Second, fmt.Sprintf("log %q", substr), func() bool {
		got = h.find(substr)
		return len(got) > 0
	})
	return got[0]
}

// testEnv is a runtime with captured logs and, optionally, a real NATS
// server and publisher whose events the test collects.
type testEnv struct {
	r    *Runtime
	logs *logCapture

	evMu   sync.Mutex
	events []events.Event

	exitMu sync.Mutex
	exits  []InstanceInfo
}

type envOpt func(*Config)

func newEnv(t testing.TB, withEvents bool, opts ...envOpt) *testEnv {
	t.Helper()
	env := &testEnv{logs: newLogCapture(t)}
	log := slog.New(env.logs)
	cfg := Config{
		CacheDir: capsuletest.CacheDir(t),
		Logger:   log,
		Grace:    testGrace,
		OnExit: func(info InstanceInfo, err error) {
			env.exitMu.Lock()
			env.exits = append(env.exits, info)
			env.exitMu.Unlock()
		},
	}
	if withEvents {
		nc := startNATS(t)
		cfg.Events = events.NewPublisher(nc, "node-test", log)
		sub, err := events.Subscribe(nc, ">", log, func(ev events.Event) {
			env.evMu.Lock()
			env.events = append(env.events, ev)
			env.evMu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Unsubscribe() })
	}
	for _, o := range opts {
		o(&cfg)
	}

	r, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	env.r = r
	t.Cleanup(func() {
		if err := r.Close(context.Background()); err != nil {
			t.Errorf("closing runtime: %v", err)
		}
	})
	return env
}

var addLocks sync.Map // capsule source dir -> *sync.Mutex

// add packages the Go capsule in srcDir under name, with extra manifest
// lines, and adds it to the runtime.
func (env *testEnv) add(t testing.TB, srcDir, name, extra string) *Capsule {
	t.Helper()
	manifest := fmt.Sprintf("[package]\nname = %q\nversion = \"0.0.1\"\nwasm = \"%s.wasm\"\n%s",
		name, name, extra)
	dir := capsuletest.Package(t, srcDir, manifest)

	// Tests run in parallel, each with its own runtime. One Add per module
	// at a time means the first compiles into the shared cache and the
	// others read it, rather than all compiling at once (slow under -race).
	mu, _ := addLocks.LoadOrStore(srcDir, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	c, err := env.r.Add(context.Background(), dir)
	if err != nil {
		t.Fatalf("adding %s: %v", name, err)
	}
	return c
}

// waitEvent waits for an event on subject for instance and returns it.
func (env *testEnv) waitEvent(t testing.TB, subject, instance string) events.Event {
	t.Helper()
	var got events.Event
	eventually(t, 10*time.Second, subject+" for "+instance, func() bool {
		env.evMu.Lock()
		defer env.evMu.Unlock()
		for _, ev := range env.events {
			if ev.Topic == subject && ev.Instance == instance {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

func (env *testEnv) exitCount() int {
	env.exitMu.Lock()
	defer env.exitMu.Unlock()
	return len(env.exits)
}

// startNATS runs a real embedded NATS server on a random port and returns
// a connection to it.
func startNATS(t testing.TB) *nats.Conn {
	t.Helper()
	return natstest.Start(t)
}
