package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/astrid-os/astrid-node/internal/natstest"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startServer(t *testing.T) *nats.Conn { return natstest.Start(t) }

// testHost is a minimal Host: the control service's own logic (routing,
// validation, replies) is what these tests check; the runtime behind it is
// exercised by the end-to-end tests.
type testHost struct {
	mu       sync.Mutex
	unloads  []UnloadRequest
	busy     int
	capsules map[string]bool
}

func (h *testHost) List() []InstanceInfo {
	return []InstanceInfo{{Capsule: "echo", Loaded: true, Streams: h.busy}}
}

func (h *testHost) Load(_ context.Context, capsule string) Reply {
	if !h.capsules[capsule] {
		return Reply{Error: "unknown capsule " + capsule}
	}
	return Reply{OK: true, Instance: "11111111-2222-3333-4444-555555555555"}
}

func (h *testHost) Unload(_ context.Context, req UnloadRequest) Reply {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unloads = append(h.unloads, req)
	if req.IfIdle && h.busy > 0 {
		return Reply{Error: "instance has open streams", Streams: h.busy}
	}
	return Reply{OK: true}
}

func (h *testHost) Stats() Stats { return Stats{Capsules: len(h.capsules)} }

func serve(t *testing.T, nc *nats.Conn, node string, h Host) {
	t.Helper()
	svc, err := Serve(nc, node, "0.1.0", h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
}

func TestServeRejectsBadRequests(t *testing.T) {
	nc := startServer(t)
	h := &testHost{capsules: map[string]bool{"echo": true}}
	serve(t, nc, "n1", h)

	cases := []struct {
		name, verb, body, want string
	}{
		{"not json", VerbUnload, `{nope`, "invalid request"},
		{"empty", VerbUnload, ``, "empty request body"},
		{"unknown field", VerbUnload, `{"capsule":"echo","force":true}`, "unknown field"},
		{"bad capsule", VerbUnload, `{"capsule":"Echo!"}`, "invalid capsule name"},
		{"bad instance", VerbUnload, `{"capsule":"echo","instance":"x"}`, "invalid instance"},
		{"bad reason", VerbUnload, `{"capsule":"echo","reason":"crash"}`, "invalid reason"},
		{"trailing", VerbLoad, `{"capsule":"echo"} {}`, "trailing data"},
		{"oversize", VerbLoad, `{"capsule":"` + strings.Repeat("a", MaxRequest) + `"}`,
			"exceeds"},
		{"unknown capsule", VerbLoad, `{"capsule":"nope"}`, "unknown capsule nope"},
		{"load empty", VerbLoad, ``, "empty request body"},
		{"load blank", VerbLoad, " \n\t", "empty request body"},
		{"load no capsule", VerbLoad, `{}`, `invalid capsule name ""`},
		{"load null", VerbLoad, `null`, `invalid capsule name ""`},
		{"load array", VerbLoad, `["echo"]`, "invalid request"},
		{"capsule a number", VerbLoad, `{"capsule":5}`, "invalid request"},
		{"capsule too long", VerbLoad, `{"capsule":"` + strings.Repeat("a", 64) + `"}`,
			"invalid capsule name"},
		{"capsule with a dot", VerbUnload, `{"capsule":"echo.x"}`, "invalid capsule name"},
		{"if_idle a string", VerbUnload, `{"capsule":"echo","if_idle":"yes"}`,
			"invalid request"},
		{"instance not a uuid", VerbUnload,
			`{"capsule":"echo","instance":"11111111-2222-3333-4444-55555555555"}`,
			"invalid instance"},
		{"oversize list", VerbList, strings.Repeat(" ", MaxRequest+1), "exceeds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := nc.Request(Subject("n1", tc.verb), []byte(tc.body), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Header.Get("Nats-Service-Error"); !strings.Contains(got, tc.want) {
				t.Errorf("error header %q; want it to contain %q", got, tc.want)
			}
			if !strings.Contains(string(m.Data), `"ok":false`) {
				t.Errorf("body %s; want ok false", m.Data)
			}
		})
	}
	if len(h.unloads) != 0 {
		t.Errorf("host saw %d unloads from invalid requests; want 0", len(h.unloads))
	}
}

// TestServeErrorCodes: a malformed request is a 400, a refusal by the
// host a 409 whose body still carries the node and the host's stream
// count.
func TestServeErrorCodes(t *testing.T) {
	nc := startServer(t)
	serve(t, nc, "n1", &testHost{busy: 3})

	cases := []struct {
		name, body, code string
		streams          int
	}{
		{"malformed", `{`, "400", 0},
		{"busy", `{"capsule":"echo","reason":"idle","if_idle":true}`, "409", 3},
	}
	for _, tc := range cases {
		m, err := nc.Request(Subject("n1", VerbUnload), []byte(tc.body), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep Reply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			t.Fatalf("%s: body %q: %v", tc.name, m.Data, err)
		}
		if got := m.Header.Get("Nats-Service-Error-Code"); got != tc.code {
			t.Errorf("%s: error code %q; want %s", tc.name, got, tc.code)
		}
		if rep.OK || rep.Node != "n1" || rep.Error == "" || rep.Streams != tc.streams {
			t.Errorf("%s: reply %+v; want not ok from n1 with an error and %d streams",
				tc.name, rep, tc.streams)
		}
	}
}

// TestServeReachableOnReturn: a client on another connection can call a
// node's control service as soon as Serve returns, as ctl does right after
// the node's ready line.
func TestServeReachableOnReturn(t *testing.T) {
	nc := startServer(t)
	other, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for i := range 20 {
		node := fmt.Sprintf("n%d", i)
		serve(t, nc, node, &testHost{})
		if _, err := Call(context.Background(), other, node, VerbList, nil); err != nil {
			t.Fatalf("list on %s right after Serve: %v", node, err)
		}
	}
}

func TestCallReachesOneNode(t *testing.T) {
	nc := startServer(t)
	h1 := &testHost{busy: 2}
	h2 := &testHost{}
	serve(t, nc, "n1", h1)
	serve(t, nc, "n2", h2)
	ctx := context.Background()

	rep, err := Call(ctx, nc, "n2", VerbUnload, UnloadRequest{Capsule: "echo", IfIdle: true,
		Reason: "idle"})
	if err != nil || !rep.OK || rep.Node != "n2" {
		t.Fatalf("unload on n2: %+v, %v; want ok from n2", rep, err)
	}
	if len(h1.unloads) != 0 || len(h2.unloads) != 1 {
		t.Fatalf("unloads n1=%d n2=%d; want 0 and 1", len(h1.unloads), len(h2.unloads))
	}

	// The node is the authority: a busy instance refuses an idle unload.
	rep, err = Call(ctx, nc, "n1", VerbUnload, UnloadRequest{Capsule: "echo", IfIdle: true,
		Reason: "idle"})
	if !errors.Is(err, ErrRefused) || rep.Streams != 2 {
		t.Fatalf("busy unload: %+v, %v; want refused with 2 streams", rep, err)
	}

	if _, err := Call(ctx, nc, "n9", VerbList, nil); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("call to a missing node: %v; want no responders", err)
	}
	if _, err := Call(ctx, nc, "a.b", VerbList, nil); err == nil {
		t.Fatal("call with a dotted node id succeeded; want an error")
	}

	ids, err := Discover(ctx, nc, 300*time.Millisecond)
	if err != nil || strings.Join(ids, ",") != "n1,n2" {
		t.Fatalf("discover: %v, %v; want [n1 n2]", ids, err)
	}
	st, err := CallStats(ctx, nc, "n1")
	if err != nil || st.Node != "n1" {
		t.Fatalf("stats: %+v, %v", st, err)
	}
}

func TestServeRejectsBadNodeID(t *testing.T) {
	nc := startServer(t)
	for _, id := range []string{"", "a.b", "a b", "*", ">", strings.Repeat("x", 65)} {
		if _, err := Serve(nc, id, "0.1.0", &testHost{}, slog.Default()); err == nil {
			t.Errorf("Serve(%q) succeeded; want an error", id)
		}
	}
}
