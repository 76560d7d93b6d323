package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/schemas"
)

// clusterBeat is the heartbeat interval of the test cluster: short, so
// that a node is dropped for silence within a second.
const clusterBeat = 200 * time.Millisecond

// member is one node of the test cluster with the flags it was started
// with, so that it can restart as the same node.
type member struct {
	*Node
	args []string
}

func (m *member) start(t *testing.T) {
	t.Helper()
	m.Node = StartNode(t, m.args...)
}

// startCluster starts three nodes n1, n2, n3 whose embedded servers route
// to each other. Node 1 runs the cluster's idle monitor; node 2 unloads
// idle capsules after idle2.
func startCluster(t *testing.T, idle2 time.Duration) [3]*member {
	var cluster, client [3]int
	var routes []string
	for i := range cluster {
		cluster[i], client[i] = FreePort(t), FreePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cluster[i]))
	}

	var ms [3]*member
	for i := range ms {
		monitor, idle := "off", "5m"
		switch i {
		case 0:
			monitor = "cluster"
		case 1:
			idle = idle2.String()
		}
		args := append(CapsuleFlags(t, "echo"),
			"--home", t.TempDir(),
			"--node-id", fmt.Sprintf("n%d", i+1),
			"--heartbeat", clusterBeat.String(),
			"--nats-listen", fmt.Sprintf("127.0.0.1:%d", client[i]),
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", cluster[i]),
			"--cluster-name", "e2e",
			// Every node gets the whole list; a route to itself is dropped
			// by NATS.
			"--routes", strings.Join(routes, ","),
			"--idle-monitor", monitor,
			"--idle-timeout", idle)
		ms[i] = &member{args: args}
		ms[i].start(t)
	}
	return ms
}

// TestThreeNodeCluster runs three real nodes on loopback as one NATS
// cluster and checks, through node 1 and 2 only, what an operator sees:
// every node's events, the control services, ctl across nodes, the idle
// monitor of node 1 acting on node 2, and the loss and return of node 3.
func TestThreeNodeCluster(t *testing.T) {
	NatsCLI(t)
	ms := startCluster(t, 500*time.Millisecond)
	n1, n2, n3 := ms[0], ms[1], ms[2]

	// The subscriptions live on node 1 for the whole test.
	beats := n1.StartSub(events.SubjectHeartbeat)
	lifecycle := n1.StartSub("capsule.v1.>")
	clients := n1.StartSub("client.v1.>")

	// n3's instances, all it ever had, to tell fresh ids on its return.
	n3Instances := map[string]bool{}

	// A node restarted in a step belongs to the whole test, not the step.
	outer := t
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("cluster forms", func(t *testing.T) {
		for _, m := range ms {
			_, ev := beats.WaitMsg(t, 0, "a heartbeat of "+m.ID+" on node 1",
				heartbeatFrom(m.ID))
			hb := ev.Payload.(events.Heartbeat)
			if hb.Node != m.ID || hb.IntervalMS != clusterBeat.Milliseconds() {
				t.Errorf("heartbeat of %s: %+v; want node %s every %v", m.ID, hb, m.ID,
					clusterBeat)
			}
			if m == n3 {
				for _, in := range hb.Instances {
					n3Instances[in.Instance] = true
				}
			}
		}
		// From here on, events of nodes 2 and 3 reach node 1's subs.
		for _, s := range []*Sub{lifecycle, clients} {
			s.WaitRouted(t, n2.Node)
			s.WaitRouted(t, n3.Node)
		}
	})

	// A standalone idle monitor through node 2's server that watches only
	// node 3, so it leaves node 2's idle unloads to node 1's monitor.
	var standalone *Buffer
	step("a standalone idle monitor joins through node 2", func(t *testing.T) {
		standalone = n2.StartIdle(outer, "--node", "n3")
	})

	step("nats micro ls shows a control service per node", func(t *testing.T) {
		out, err := n1.Nats("micro", "ls")
		if err != nil || !strings.Contains(out, control.ServiceName) {
			t.Fatalf("nats micro ls: %v\n%s\nwant the %s service", err, out,
				control.ServiceName)
		}
		out, err = n1.Nats("micro", "ls", control.ServiceName, "--json")
		if err != nil {
			t.Fatal(err)
		}
		var infos []struct {
			Name     string            `json:"name"`
			Metadata map[string]string `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(out), &infos); err != nil {
			t.Fatalf("nats micro ls --json: %v\n%s", err, out)
		}
		seen := map[string]int{}
		for _, in := range infos {
			if in.Name == control.ServiceName {
				seen[in.Metadata["node"]]++
			}
		}
		if len(seen) != 3 || seen["n1"] != 1 || seen["n2"] != 1 || seen["n3"] != 1 {
			t.Errorf("services by node %v; want one each on n1, n2, n3:\n%s", seen, out)
		}
	})

	step("client events of node 3 reach node 1", func(t *testing.T) {
		mark := clients.Mark()
		out, errOut, code := n3.Connect(t, "echo", "hi\n")
		if code != 0 || out != "hi\n" {
			t.Fatalf("connect on n3: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		conn, _ := clients.WaitMsg(t, mark, "client.v1.connected of n3 on node 1",
			func(m Msg, e events.Event) bool {
				return m.Subject == events.SubjectConnected && e.Node == "n3"
			})
		disc, _ := clients.WaitMsg(t, mark, "client.v1.disconnect of n3 on node 1",
			func(m Msg, e events.Event) bool {
				return m.Subject == events.SubjectDisconnect && e.Node == "n3"
			})
		for _, m := range []Msg{conn, disc} {
			if err := schemas.Validate(schemas.IPCMessage, m.Body); err != nil {
				t.Errorf("%s: %v\n%s", m.Subject, err, m.Body)
			}
			t.Logf("measured %s: body %d B, headers %d B on the wire", m.Subject,
				len(m.Body), wireHeaderSize(m.Header))
		}
		if conn.Header[events.HeaderStream] != disc.Header[events.HeaderStream] ||
			conn.Header[events.HeaderCapsule] != "echo" {
			t.Errorf("connected %v and disconnect %v; want one echo stream", conn.Header,
				disc.Header)
		}
		n3Instances[conn.Header[events.HeaderInstance]] = true
	})

	step("ctl through node 2 unloads echo on node 3", func(t *testing.T) {
		mark := lifecycle.Mark()
		out, errOut, code := n2.Ctl(t, "unload", "n3", "echo")
		if code != 0 || !strings.HasPrefix(out, "unload: ok node=n3 instance=") {
			t.Fatalf("ctl unload n3 echo: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		_, ev := lifecycle.WaitMsg(t, mark, "capsule.v1.unloaded of n3",
			func(m Msg, e events.Event) bool {
				u, ok := e.Payload.(events.Unloaded)
				return ok && e.Node == "n3" && u.Node == "n3" && u.Capsule == "echo"
			})
		if u := ev.Payload.(events.Unloaded); u.Reason != events.UnloadRequest {
			t.Errorf("unloaded %+v; want reason request", u)
		}

		list := n2.CtlList(t)
		for _, node := range []string{"n1", "n2", "n3"} {
			if _, ok := capsuleOn(list[node], "echo"); !ok {
				t.Errorf("ctl list has no echo on %s: %v", node, list)
			}
		}
		if in, _ := capsuleOn(list["n3"], "echo"); in.Loaded {
			t.Errorf("ctl list after unload: echo on n3 %+v; want unloaded", in)
		}
		if in, _ := capsuleOn(list["n1"], "echo"); !in.Loaded {
			t.Errorf("ctl list: echo on n1 %+v; want loaded", in)
		}

		// Load it again so that node 3 has an instance when it dies.
		mark = lifecycle.Mark()
		if out, errOut, code := n2.Ctl(t, "load", "n3", "echo"); code != 0 {
			t.Fatalf("ctl load n3 echo: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		_, ev = lifecycle.WaitMsg(t, mark, "capsule.v1.loaded of n3",
			func(m Msg, e events.Event) bool {
				l, ok := e.Payload.(events.Loaded)
				return ok && e.Node == "n3" && l.Reason == events.LoadRequest
			})
		n3Instances[ev.Payload.(events.Loaded).Instance] = true
	})

	step("a bad control request gets a clear error through the nats CLI", func(t *testing.T) {
		out, err := n1.Nats("request", control.Subject("n3", control.VerbUnload), "{nope")
		if err != nil || !strings.Contains(out, `"ok":false`) ||
			!strings.Contains(out, `"node":"n3"`) || !strings.Contains(out, "invalid request") {
			t.Errorf("nats request with a malformed body: %v\n%s\nwant an error reply of n3",
				err, out)
		}
	})

	step("ctl names the nodes when one is unknown", func(t *testing.T) {
		_, errOut, code := n2.Ctl(t, "unload", "n9", "echo")
		want := `unknown node "n9"`
		if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, want) ||
			!strings.Contains(errOut, "n1, n2, n3") {
			t.Errorf("ctl unload n9 echo: exit %d, stderr %q; want exit 1 and one line "+
				"with %s and the nodes n1, n2, n3", code, errOut, want)
		}
	})

	step("node 1's idle monitor unloads idle echo on node 2", func(t *testing.T) {
		mark := lifecycle.Mark()
		cmark := clients.Mark()
		if out, errOut, code := n2.Connect(t, "echo", "x\n"); code != 0 || out != "x\n" {
			t.Fatalf("connect on n2: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		conn, _ := clients.WaitMsg(t, cmark, "client.v1.connected of n2",
			func(m Msg, e events.Event) bool {
				return m.Subject == events.SubjectConnected && e.Node == "n2"
			})
		inst := conn.Header[events.HeaderInstance]
		msg, ev := lifecycle.WaitMsg(t, mark, "idle unload of n2's instance "+inst,
			func(m Msg, e events.Event) bool {
				u, ok := e.Payload.(events.Unloaded)
				return ok && u.Instance == inst
			})
		u := ev.Payload.(events.Unloaded)
		if u.Reason != events.UnloadIdle || msg.Header[events.HeaderNode] != "n2" ||
			u.Node != "n2" {
			t.Errorf("unloaded %+v with headers %v; want reason idle on n2", u, msg.Header)
		}
		// Nodes 2 and 3 run no monitor, so node 1's asked.
		if !strings.Contains(n1.Stderr.String(), "instance="+inst) {
			t.Errorf("node 1's log does not mention the idle unload of %s", inst)
		}
		for _, m := range []*member{n2, n3} {
			if strings.Contains(m.Stderr.String(), "idle monitor running") {
				t.Errorf("node %s runs an idle monitor; want --idle-monitor off", m.ID)
			}
		}
	})

	var killedAt int
	step("kill -9 of node 3: the others go on, the monitor drops it", func(t *testing.T) {
		if err := n3.Cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		n3.Wait(stopTimeout)
		killedAt = beats.Mark()

		// Node 2's streams still reach node 1.
		cmark := clients.Mark()
		if out, _, code := n2.Connect(t, "echo", "after\n"); code != 0 || out != "after\n" {
			t.Fatalf("connect on n2 after the kill: exit %d, stdout %q", code, out)
		}
		clients.WaitMsg(t, cmark, "client.v1.disconnect of n2 after the kill",
			func(m Msg, e events.Event) bool {
				return m.Subject == events.SubjectDisconnect && e.Node == "n2"
			})

		monitors := []struct {
			name string
			log  func() string
		}{
			{"node 1's monitor", n1.Stderr.String},
			{"the standalone monitor", standalone.String},
		}
		for _, mon := range monitors {
			var drop nodeDrop
			WaitFor(t, mon.name+" to drop n3", natsTimeout, func() bool {
				for _, d := range parseDrops(t, mon.log()) {
					if d.node == "n3" {
						drop = d
						return true
					}
				}
				return false
			})
			t.Logf("%s dropped n3 after a silence of %v", mon.name, drop.silence)
			// A monitor measures the silence from the last heartbeat it
			// got: n3 is gone before it would have missed a fourth beat,
			// and with the instance ctl loaded. (The log rounds the silence
			// to the millisecond: more than 600ms may print as 600ms.)
			if drop.silence < 3*clusterBeat || drop.silence >= 4*clusterBeat ||
				drop.instances != "1" {
				t.Errorf("%s: drop of n3 %+v; want after 3 and within 4 intervals of %v, "+
					"with 1 instance", mon.name, drop, clusterBeat)
			}
		}
		for _, d := range n1.NodeDrops(t) {
			if d.node != "n3" {
				t.Errorf("monitor dropped %s too: %+v", d.node, d)
			}
		}

		// Heartbeats of the survivors keep coming.
		for _, m := range []*member{n1, n2} {
			beats.WaitMsg(t, beats.Mark(), "a heartbeat of "+m.ID+" after the kill",
				heartbeatFrom(m.ID))
		}
		list := n1.CtlList(t)
		if _, ok := list["n3"]; ok || len(list) != 2 {
			t.Errorf("ctl list after the kill names nodes %v; want n1 and n2", keys(list))
		}
	})

	step("node 3 restarts and rejoins with fresh instances", func(t *testing.T) {
		mark := lifecycle.Mark()
		bmark := beats.Mark()
		n3.start(outer)

		// The heartbeat starts with the node, before its capsules are
		// loaded: wait for one that lists them.
		_, ev := beats.WaitMsg(t, bmark, "a heartbeat of the restarted n3 listing echo",
			func(m Msg, e events.Event) bool {
				hb, ok := e.Payload.(events.Heartbeat)
				return ok && e.Node == "n3" && len(hb.Instances) > 0
			})
		hb := ev.Payload.(events.Heartbeat)
		if len(hb.Instances) != 1 || n3Instances[hb.Instances[0].Instance] {
			t.Fatalf("heartbeat after restart lists %+v; want one instance, none of %v",
				hb.Instances, n3Instances)
		}
		fresh := hb.Instances[0].Instance

		// Its loaded event at start crossed the route too: the node's
		// routes form within milliseconds, the capsule load takes longer.
		_, ev = lifecycle.WaitMsg(t, mark, "capsule.v1.loaded of the restarted n3",
			func(m Msg, e events.Event) bool {
				_, ok := e.Payload.(events.Loaded)
				return ok && e.Node == "n3"
			})
		if l := ev.Payload.(events.Loaded); l.Instance != fresh || l.Reason != events.LoadStart {
			t.Errorf("loaded after restart %+v; want instance %s, reason start", l, fresh)
		}

		if in, _ := capsuleOn(n1.CtlList(t)["n3"], "echo"); in.Instance != fresh {
			t.Errorf("ctl list: echo on n3 %+v; want instance %s", in, fresh)
		}
		// Its heartbeats flow again, and the monitor dropped it only once.
		beats.WaitMsg(t, beats.Mark(), "another heartbeat of n3", heartbeatFrom("n3"))
		t.Logf("heartbeats on node 1 since the kill: %d", len(beats.Since(killedAt)))
	})

	step("heartbeat sizes", func(t *testing.T) {
		// One figure per instance count, for docs/deploy.md.
		sizes := map[int]int{}
		msgs := beats.Since(0)
		for _, m := range msgs[:len(msgs)-1] { // the last may be half printed
			ev, err := events.DecodeBody(m.Body)
			if err != nil {
				t.Fatal(err)
			}
			k := len(ev.Payload.(events.Heartbeat).Instances)
			if _, ok := sizes[k]; !ok {
				sizes[k] = len(m.Body)
				t.Logf("measured heartbeat with %d instances: body %d B, headers %d B", k,
					len(m.Body), wireHeaderSize(m.Header))
			}
		}
	})

	if drops := n1.NodeDrops(t); len(drops) != 1 {
		t.Errorf("monitor drops %+v; want only the one of n3", drops)
	}
	for _, m := range []*member{n3, n2, n1} {
		if code := m.Stop(); code != 0 {
			t.Errorf("node %s exit %d after SIGTERM; want 0", m.ID, code)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
