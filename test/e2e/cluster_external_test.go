package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
)

// nodePermissions are the least NATS permissions of a node named id whose
// idle monitor watches only itself (--idle-monitor local), as
// docs/deploy.md lists them. TestExternalNATSLeastPermissions proves the
// list is enough.
func nodePermissions(id string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"client.v1.>", "capsule.v1.>", "node.v1.>", // events
			"astrid.node." + id + ".unload", // the idle monitor's requests
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			"astrid.node." + id + ".>",                 // control endpoints
			"$SRV.>",                                   // micro discovery: ping, info, stats
			"client.v1.>", "capsule.v1.>", "node.v1.>", // the idle monitor
			"_INBOX.>", // replies to the idle monitor's requests
		}},
		// Replies to control and discovery requests.
		Response: &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
	}
}

// ctlPermissions are the least NATS permissions of an operator running
// astrid-node ctl, as docs/deploy.md lists them.
func ctlPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"astrid.node.*.*", "$SRV.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// TestExternalNATSLeastPermissions joins a node to an existing NATS
// server with --nats-url as a user holding only the permissions the
// deployment guide lists, and checks that everything a node does still
// works: events, its idle monitor's unload, ctl and `nats micro ls`
// (through an operator account that needs no credentials here).
func TestExternalNATSLeastPermissions(t *testing.T) {
	NatsCLI(t)
	const id, password = "site1-a", "node-secret-1"
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		Users: []*server.User{
			{Username: "node", Password: password, Permissions: nodePermissions(id)},
			{Username: "ops", Password: "ops-secret"},
			{Username: "ctl", Password: "ctl-secret", Permissions: ctlPermissions()},
		},
		NoAuthUser: "ops",
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}

	// The password comes from the environment, which keeps it out of ps.
	t.Setenv("ASTRID_NATS_PASSWORD", password)
	n := StartNode(t, append(CapsuleFlags(t, "echo"), "--node-id", id,
		"--nats-url", s.ClientURL(), "--nats-user", "node",
		"--heartbeat", "200ms", "--idle-timeout", "300ms")...)
	clients := n.StartSub("client.v1.>")
	lifecycle := n.StartSub("capsule.v1.>")

	// A stream, then the node's own idle monitor unloads the instance.
	mark := lifecycle.Mark()
	if out, errOut, code := n.Connect(t, "echo", "hi\n"); code != 0 || out != "hi\n" {
		t.Fatalf("connect: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	conn, _ := clients.WaitMsg(t, 0, "client.v1.connected", func(m Msg, e events.Event) bool {
		return m.Subject == events.SubjectConnected && e.Node == id
	})
	inst := conn.Header[events.HeaderInstance]
	_, ev := lifecycle.WaitMsg(t, mark, "the idle unload of "+inst,
		func(m Msg, e events.Event) bool {
			u, ok := e.Payload.(events.Unloaded)
			return ok && u.Instance == inst
		})
	if u := ev.Payload.(events.Unloaded); u.Reason != events.UnloadIdle || u.Node != id {
		t.Errorf("unloaded %+v; want reason idle on %s", u, id)
	}

	// The control service answers ctl, run as a user with only the ctl
	// permissions, and micro discovery. (The idle monitor may unload the
	// instance again before the list.)
	asCtl := []string{"--nats-user", "ctl", "--nats-password", "ctl-secret"}
	if out, errOut, code := n.Ctl(t, append(asCtl, "load", id, "echo")...); code != 0 {
		t.Fatalf("ctl load: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code := n.Ctl(t, append(asCtl, "--json", "list")...)
	if code != 0 || !strings.Contains(out, `"capsule":"echo"`) {
		t.Errorf("ctl list as the ctl user: exit %d, stdout %q, stderr %q; want echo listed",
			code, out, errOut)
	}
	if in, ok := capsuleOn(n.CtlList(t)[id], "echo"); !ok || in.Socket != "echo" {
		t.Errorf("ctl list: echo on %s %+v; want it listed with its socket", id, in)
	}
	out, err = n.Nats("micro", "ls", control.ServiceName, "--json")
	var infos []struct {
		Metadata map[string]string `json:"metadata"`
	}
	if err != nil || json.Unmarshal([]byte(out), &infos) != nil || len(infos) != 1 ||
		infos[0].Metadata["node"] != id {
		t.Errorf("nats micro ls: %v\n%s\nwant one service of node %s", err, out, id)
	}

	if code := n.Stop(); code != 0 {
		t.Errorf("node exit %d; want 0", code)
	}
	logs := n.Stderr.String()
	if strings.Contains(strings.ToLower(logs), "permissions violation") {
		t.Errorf("the node hit a permissions violation:\n%s", logs)
	}
	if strings.Contains(logs, password) {
		t.Error("the node logged its NATS password")
	}
}
