package e2e

import (
	"strings"
	"testing"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/schemas"
)

// Connect runs `astrid-node connect` against n with stdin and returns its
// stdout, stderr and exit code.
func (n *Node) Connect(t testing.TB, target, stdin string, extra ...string) (string, string, int) {
	t.Helper()
	args := append([]string{"connect", "--home", n.Home}, extra...)
	return Run(t, stdin, append(args, target)...)
}

// TestEchoThroughConnect is the user's path: a node with the echo capsule,
// `astrid-node connect echo` sending lines, and `nats sub 'client.v1.>'`
// showing the stream open and end with schema-valid bodies.
func TestEchoThroughConnect(t *testing.T) {
	n := StartNode(t, CapsuleFlags(t, "echo")...)
	sub := n.StartSub("client.v1.>")

	out, errOut, code := n.Connect(t, "echo", "hello\nworld\n")
	if code != 0 || out != "hello\nworld\n" {
		t.Fatalf("connect: exit %d, stdout %q, stderr %q; want exit 0 and the lines echoed",
			code, out, errOut)
	}

	msgs := sub.Wait(2, natsTimeout)
	if msgs[0].Subject != events.SubjectConnected || msgs[1].Subject != events.SubjectDisconnect {
		t.Fatalf("subjects %s, %s; want connected then disconnect", msgs[0].Subject,
			msgs[1].Subject)
	}
	for _, m := range msgs {
		if err := schemas.Validate(schemas.IPCMessage, m.Body); err != nil {
			t.Errorf("%s body does not validate: %v\n%s", m.Subject, err, m.Body)
		}
		if m.Header[events.HeaderCapsule] != "echo" || m.Header[events.HeaderNode] != n.ID {
			t.Errorf("%s headers %v; want capsule echo on node %s", m.Subject, m.Header, n.ID)
		}
	}
	if msgs[0].Header[events.HeaderStream] != msgs[1].Header[events.HeaderStream] {
		t.Errorf("connect and disconnect name streams %q and %q; want the same",
			msgs[0].Header[events.HeaderStream], msgs[1].Header[events.HeaderStream])
	}
	if !strings.Contains(string(msgs[1].Body), `"reason":"peer_closed"`) {
		t.Errorf("disconnect body %s; want reason peer_closed", msgs[1].Body)
	}
	if code := n.Stop(); code != 0 {
		t.Errorf("node exit %d; want 0", code)
	}
}
