package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/internal/capsuletest"
	"github.com/astrid-os/astrid-node/node"
)

func runCtl(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cmdCtl(args, &out, &errb)
	return code, out.String(), errb.String()
}

// oneLine reports whether s is exactly one line of text.
func oneLine(s string) bool {
	return strings.Count(s, "\n") == 1 && strings.HasSuffix(s, "\n")
}

// closedPort returns a loopback URL where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// ctlNode starts a real node (embedded NATS on a free loopback port) with
// a real host running the echo capsule, and returns it with its NATS URL.
func ctlNode(t *testing.T, id string) (*node.Node, string) {
	t.Helper()
	// A short home keeps the socket path under the Unix limit.
	home, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })

	manifest, err := os.ReadFile("../../capsules/echo/Capsule.toml")
	if err != nil {
		t.Fatal(err)
	}
	caps := t.TempDir()
	pkg := capsuletest.Package(t, "../../capsules/echo", string(manifest))
	if err := os.Rename(pkg, filepath.Join(caps, "echo")); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	n, err := node.Start(ctx, node.Config{Home: home, NodeID: id, NATSListen: "127.0.0.1:0",
		Heartbeat: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h, err := node.StartHost(ctx, n, node.HostConfig{CapsulesDir: caps,
		CacheDir: capsuletest.CacheDir(t), IdleMonitor: node.IdleMonitorOff,
		Grace: time.Second, MaxStreams: 4})
	if err != nil {
		n.Shutdown(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("closing host: %v", err)
		}
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
	return n, n.ClientURL()
}

// TestCtlUsageErrors checks that a bad command line exits 2 with one line
// on stderr, before any connection: the URL given leads nowhere, so an
// attempt to dial would exit 1 instead.
func TestCtlUsageErrors(t *testing.T) {
	url := "nats://" + closedPort(t)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "no command"},
		{"unknown command", []string{"restart"}, `unknown command "restart"`},
		{"list with an argument", []string{"list", "n1"}, "list takes no arguments; got 1"},
		{"stats without node", []string{"stats"}, "stats takes NODE; got 0"},
		{"unload without capsule", []string{"unload", "n1"},
			"unload takes NODE CAPSULE; got 1"},
		{"load with extra", []string{"load", "n1", "echo", "x"},
			"load takes NODE CAPSULE; got 3"},
		{"dotted node id", []string{"unload", "n1.x", "echo"}, `invalid node id "n1.x"`},
		{"wildcard node id", []string{"stats", ">"}, `invalid node id ">"`},
		{"bad capsule name", []string{"load", "n1", "Echo!"}, `invalid capsule name "Echo!"`},
		{"unknown flag", []string{"--force", "list"}, "flag provided but not defined"},
		{"zero timeout", []string{"--timeout", "0s", "list"}, "--timeout must be positive"},
		{"bad timeout", []string{"--timeout", "soon", "list"}, "invalid value"},
		{"password without user", []string{"--nats-password", "pw", "list"},
			"--nats-password needs --nats-user"},
		{"creds and user", []string{"--nats-creds", "x.creds", "--nats-user", "u", "list"},
			"exclude each other"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCtl(append([]string{"--nats-url", url}, tc.args...)...)
			if code != 2 || out != "" || !oneLine(errOut) || !strings.Contains(errOut, tc.want) {
				t.Errorf("ctl %q: got exit %d, stdout %q, stderr %q; want exit 2 and one "+
					"line containing %q", tc.args, code, out, errOut, tc.want)
			}
		})
	}
}

func TestCtlHelp(t *testing.T) {
	t.Setenv("ASTRID_NATS_PASSWORD", "hunter2-secret")
	code, out, errOut := runCtl("-h")
	if code != 0 || errOut != "" || !strings.Contains(out, "unload NODE CAPSULE") ||
		!strings.Contains(out, "-nats-url") {
		t.Errorf("ctl -h: got exit %d, stdout %q, stderr %q; want exit 0 and the usage",
			code, out, errOut)
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("ctl -h shows the password from the environment:\n%s", out)
	}
}

// TestCtlUnreachableNATS: no server at the URL is exit 1 with one line,
// and the credentials in the URL are not printed.
func TestCtlUnreachableNATS(t *testing.T) {
	url := "nats://alice:s3cret@" + closedPort(t)
	code, out, errOut := runCtl("--nats-url", url, "--timeout", "500ms", "list")
	if code != 1 || out != "" || !oneLine(errOut) ||
		!strings.Contains(errOut, "cannot reach NATS") {
		t.Errorf("got exit %d, stdout %q, stderr %q; want exit 1 and one line", code, out,
			errOut)
	}
	if strings.Contains(errOut, "s3cret") || strings.Contains(errOut, "alice") {
		t.Errorf("stderr shows the credentials: %q", errOut)
	}
}

// TestCtlNoNodes: a server without nodes is a clear failure, not an empty
// table.
func TestCtlNoNodes(t *testing.T) {
	_, url := ctlServerOnly(t)
	code, out, errOut := runCtl("--nats-url", url, "--timeout", "400ms", "list")
	if code != 1 || out != "" || !oneLine(errOut) || !strings.Contains(errOut, "no node") {
		t.Errorf("got exit %d, stdout %q, stderr %q; want exit 1 and one line", code, out,
			errOut)
	}
	code, _, errOut = runCtl("--nats-url", url, "--timeout", "400ms", "unload", "n1", "echo")
	if code != 1 || !oneLine(errOut) || !strings.Contains(errOut, `unknown node "n1"`) ||
		!strings.Contains(errOut, "no other node answered") {
		t.Errorf("unload with no nodes: exit %d, stderr %q", code, errOut)
	}
}

// ctlServerOnly is a node without a host: NATS is up, no control service
// answers.
func ctlServerOnly(t *testing.T) (*node.Node, string) {
	t.Helper()
	home, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	n, err := node.Start(context.Background(), node.Config{Home: home,
		NATSListen: "127.0.0.1:0", Heartbeat: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n, n.ClientURL()
}

// TestCtlAgainstNode drives ctl in-process against a real node with the
// echo capsule: list, stats, unload, load, and the errors a user meets.
func TestCtlAgainstNode(t *testing.T) {
	n, url := ctlNode(t, "ctl-n1")
	ctl := func(args ...string) (int, string, string) {
		return runCtl(append([]string{"--nats-url", url, "--timeout", "1s"}, args...)...)
	}
	list := func() control.InstanceInfo {
		t.Helper()
		code, out, errOut := ctl("--json", "list")
		var reps []control.Reply
		if code != 0 || json.Unmarshal([]byte(out), &reps) != nil || len(reps) != 1 ||
			reps[0].Node != n.ID() || len(reps[0].List) != 1 {
			t.Fatalf("ctl --json list: exit %d, stdout %q, stderr %q; want one node %s "+
				"with one capsule", code, out, errOut, n.ID())
		}
		return reps[0].List[0]
	}

	in := list()
	if in.Capsule != "echo" || !in.Loaded || in.Instance == "" || in.Socket != "echo" {
		t.Fatalf("list: %+v; want echo loaded with socket echo", in)
	}
	code, out, _ := ctl("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	rows := []string{"NODE CAPSULE STATE INSTANCE STREAMS SOCKET",
		"ctl-n1 echo loaded " + in.Instance + " 0 echo"}
	if code != 0 || len(lines) != len(rows) {
		t.Fatalf("list table: exit %d:\n%s\nwant a header and the echo row", code, out)
	}
	for i, want := range rows {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want {
			t.Errorf("list table line %d: %q; want %q", i, got, want)
		}
	}

	code, out, errOut := ctl("stats", "ctl-n1")
	var st control.Stats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Node != "ctl-n1" ||
		st.Capsules != 1 || st.Loaded != 1 {
		t.Errorf("stats: exit %d, stdout %q, stderr %q; want node ctl-n1, 1 capsule loaded",
			code, out, errOut)
	}

	code, out, errOut = ctl("unload", "ctl-n1", "echo")
	want := "unload: ok node=ctl-n1 instance=" + in.Instance + " streams_closed=0\n"
	if code != 0 || out != want {
		t.Fatalf("unload: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	if got := list(); got.Loaded || got.Instance != "" {
		t.Errorf("list after unload: %+v; want echo unloaded", got)
	}

	// What a user gets wrong: each is exit 1 with one line that says why.
	errCases := []struct {
		name string
		args []string
		want string
	}{
		{"unload what is not loaded", []string{"unload", "ctl-n1", "echo"},
			"refused: capsule not loaded"},
		{"unknown capsule", []string{"load", "ctl-n1", "nope"}, `unknown capsule "nope"`},
		{"unknown node", []string{"unload", "ctl-n9", "echo"},
			`unknown node "ctl-n9": no control service answers for it (nodes answering: ctl-n1)`},
		{"stats of an unknown node", []string{"stats", "ctl-n9"}, `unknown node "ctl-n9"`},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := ctl(tc.args...)
			if code != 1 || out != "" || !oneLine(errOut) || !strings.Contains(errOut, tc.want) {
				t.Errorf("ctl %q: exit %d, stdout %q, stderr %q; want exit 1 and one line "+
					"containing %q", tc.args, code, out, errOut, tc.want)
			}
		})
	}

	code, out, errOut = ctl("--json", "load", "ctl-n1", "echo")
	var rep control.Reply
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK ||
		rep.Instance == "" || rep.Instance == in.Instance {
		t.Fatalf("load: exit %d, stdout %q, stderr %q; want a fresh instance", code, out,
			errOut)
	}
	if got := list(); !got.Loaded || got.Instance != rep.Instance {
		t.Errorf("list after load: %+v; want instance %s", got, rep.Instance)
	}
}

// TestCtlListPartial: a node that answers discovery but not its list
// request (it is stopping, say) is reported on stderr and fails the
// command, while the other nodes are still printed.
func TestCtlListPartial(t *testing.T) {
	n, url := ctlNode(t, "ctl-ok")

	// A service that looks like a node to discovery but has no endpoints.
	ghost, err := micro.AddService(n.Conn(), micro.Config{Name: control.ServiceName,
		Version: "0.0.1", Metadata: map[string]string{"node": "ctl-ghost"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Stop()
	n.Conn().Flush()

	code, out, errOut := runCtl("--nats-url", url, "--timeout", "1s", "list")
	if code != 1 || !strings.Contains(out, "ctl-ok ") {
		t.Errorf("exit %d, stdout %q; want exit 1 with node ctl-ok listed", code, out)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "node ctl-ghost:") ||
		!strings.Contains(lines[1], "1 of 2 nodes did not answer: ctl-ghost") {
		t.Errorf("stderr %q; want the ghost's error, then the summary", errOut)
	}
}
