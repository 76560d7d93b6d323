package schemas

import (
	"encoding/json"
	"github.com/astrid-os/astrid-node/internal/natstest"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestAllSchemasCompile(t *testing.T) {
	want := []string{IPCMessage, PayloadConnect, PayloadDisconnect, PayloadLoaded,
		PayloadUnloaded, PayloadHeartbeat, HandshakeRequest, HandshakeResponse,
		ControlUnloadRequest, ControlLoadRequest, ControlReply}
	have := map[string]bool{}
	for _, n := range Names() {
		have[n] = true
	}
	for _, n := range want {
		if !have[n] {
			t.Errorf("schema %s missing; have %v", n, Names())
		}
		// Compiles, and an empty object is not a valid message of any kind.
		if err := Validate(n, []byte(`{}`)); err == nil {
			t.Errorf("%s accepts {}", n)
		}
	}
	if err := Validate("nope", []byte(`{}`)); err == nil {
		t.Error("Validate with an unknown schema name succeeded")
	}
}

// emitted publishes with events.Publisher on a real server and returns the
// raw bodies as received, keyed by what was published.
func emitted(t *testing.T) map[string]*nats.Msg {
	t.Helper()
	s := natstest.Server(t)
	pubConn, subConn := natstest.Conn(t, s), natstest.Conn(t, s)
	sub, err := subConn.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	subConn.Flush()

	p := events.NewPublisher(pubConn, "node-1", slog.New(slog.DiscardHandler))
	const inst = "5f0c8a3e-2d7b-4d1e-9a55-0c3f1f0e9b21"
	type pub struct {
		name string
		do   func() error
	}
	var pubs []pub
	pubs = append(pubs, pub{"connected", func() error { return p.Connected("echo", inst, 1) }})
	for _, r := range []string{events.ReasonStreamClosed, events.ReasonPeerClosed,
		events.ReasonFrameTooLarge, events.ReasonWriteTimeout, events.ReasonIOError,
		events.ReasonCapsuleUnloaded, events.ReasonCapsuleCrashed, events.ReasonNodeShutdown} {
		pubs = append(pubs, pub{"disconnect " + r,
			func() error { return p.Disconnected("echo", inst, 1, r) }})
	}
	for _, r := range []string{events.LoadStart, events.LoadActivation, events.LoadRequest} {
		pubs = append(pubs, pub{"loaded " + r,
			func() error { return p.Loaded("echo", inst, r, 5*time.Minute) }})
	}
	for _, r := range []string{events.UnloadIdle, events.UnloadShutdown, events.UnloadRequest,
		events.UnloadCrash} {
		pubs = append(pubs, pub{"unloaded " + r,
			func() error { return p.Unloaded("echo", inst, r, 3) }})
	}
	pubs = append(pubs,
		pub{"heartbeat empty", func() error { return p.Heartbeat(time.Second, nil) }},
		pub{"heartbeat full", func() error {
			return p.Heartbeat(time.Second, []events.InstanceStatus{
				{Capsule: "echo", Instance: inst, Streams: 2, IdleTimeoutMS: 300000},
				{Capsule: "clock", Instance: inst, Streams: 0},
			})
		}},
	)

	got := map[string]*nats.Msg{}
	for _, pb := range pubs {
		if err := pb.do(); err != nil {
			t.Fatalf("%s: %v", pb.name, err)
		}
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("%s not received: %v", pb.name, err)
		}
		got[pb.name] = m
	}
	return got
}

func TestEmittedEventsValidate(t *testing.T) {
	payloadSchema := map[string]string{
		events.SubjectConnected:  PayloadConnect,
		events.SubjectDisconnect: PayloadDisconnect,
		events.SubjectLoaded:     PayloadLoaded,
		events.SubjectUnloaded:   PayloadUnloaded,
		events.SubjectHeartbeat:  PayloadHeartbeat,
	}
	for name, m := range emitted(t) {
		t.Run(name, func(t *testing.T) {
			if err := Validate(IPCMessage, m.Data); err != nil {
				t.Fatalf("emitted %s does not validate: %v\n%s", m.Subject, err, m.Data)
			}
			var msg events.Message
			if err := json.Unmarshal(m.Data, &msg); err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(msg.Timestamp, "Z") {
				t.Errorf("timestamp %q; want UTC ending in Z", msg.Timestamp)
			}
			if msg.Topic != m.Subject {
				t.Errorf("topic %q on subject %q", msg.Topic, m.Subject)
			}
			if err := Validate(payloadSchema[m.Subject], msg.Payload); err != nil {
				t.Errorf("payload does not validate on its own: %v", err)
			}
		})
	}
}

const goodHeartbeat = `{"topic":"node.v1.heartbeat","payload":{"type":"heartbeat",` +
	`"node":"n1","interval_ms":5000,"instances":[]},"signature":null,"source_id":"n1",` +
	`"timestamp":"2026-01-02T03:04:05.123456789Z","seq":1}`

func TestIPCMessageRejects(t *testing.T) {
	if err := Validate(IPCMessage, []byte(goodHeartbeat)); err != nil {
		t.Fatalf("the baseline message is invalid: %v", err)
	}
	cases := []struct {
		name, old, new string
	}{
		{"timestamp with offset", `05.123456789Z`, `05.123456789+02:00`},
		{"timestamp not a time", `2026-01-02T03:04:05.123456789Z`, `yesterday`},
		{"timestamp impossible date", `2026-01-02`, `2026-13-40`},
		{"missing seq", `,"seq":1`, ``},
		{"seq as string", `"seq":1`, `"seq":"1"`},
		{"seq zero", `"seq":1`, `"seq":0`},
		{"signature set", `"signature":null`, `"signature":"abc"`},
		{"missing payload type", `"type":"heartbeat",`, ``},
		{"payload for another topic", `"type":"heartbeat"`, `"type":"connect"`},
		{"interval as string", `"interval_ms":5000`, `"interval_ms":"5s"`},
		{"missing node", `"node":"n1",`, ``},
		{"instances null", `"instances":[]`, `"instances":null`},
		{"bad instance", `"instances":[]`, `"instances":[{"capsule":"e","instance":"i",` +
			`"streams":-1,"idle_timeout_ms":0}]`},
		{"extra field", `"seq":1`, `"seq":1,"extra":true`},
		{"empty topic", `"topic":"node.v1.heartbeat"`, `"topic":""`},
		{"trailing data", `"seq":1}`, `"seq":1} {}`},
		{"not JSON", goodHeartbeat, `topic=node.v1.heartbeat`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(goodHeartbeat, tc.old) {
				panic("BUG: case does not apply: " + tc.old)
			}
			bad := strings.Replace(goodHeartbeat, tc.old, tc.new, 1)
			if err := Validate(IPCMessage, []byte(bad)); err == nil {
				t.Errorf("accepted %s", bad)
			}
		})
	}
}

func TestPayloadRejects(t *testing.T) {
	cases := []struct {
		schema, doc string
	}{
		{PayloadDisconnect, `{"type":"disconnect","reason":"bored"}`},
		{PayloadDisconnect, `{"type":"disconnect"}`},
		{PayloadConnect, `{"type":"connect","reason":"x"}`},
		{PayloadLoaded, `{"type":"capsule_loaded","capsule":"e","instance":"i","node":"n",` +
			`"reason":"idle","idle_timeout_ms":0}`},
		{PayloadUnloaded, `{"type":"capsule_unloaded","capsule":"e","instance":"i","node":"n",` +
			`"reason":"idle","streams_closed":-2}`},
		{PayloadUnloaded, `{"type":"capsule_unloaded","capsule":"","instance":"i","node":"n",` +
			`"reason":"idle","streams_closed":0}`},
	}
	for _, tc := range cases {
		if err := Validate(tc.schema, []byte(tc.doc)); err == nil {
			t.Errorf("%s accepted %s", tc.schema, tc.doc)
		}
	}
}

func TestHandshake(t *testing.T) {
	token := strings.Repeat("0a", 32)
	req := func(tok, version, client string) string {
		s := `{"token":"` + tok + `","protocol_version":` + version
		if client != "" {
			s += `,"client_version":"` + client + `"`
		}
		return s + "}"
	}
	resp := func(status, reason string) string {
		s := `{"status":"` + status + `","protocol_version":1,"server_version":"0.1.0"`
		if reason != "" {
			s += `,"reason":"` + reason + `"`
		}
		return s + "}"
	}
	cases := []struct {
		schema, doc string
		ok          bool
	}{
		{HandshakeRequest, req(token, "1", "0.5.1"), true},
		{HandshakeRequest, req(strings.ToUpper(token), "1", "x"), false},
		{HandshakeRequest, req(token[:62], "1", "x"), false},
		{HandshakeRequest, req(token, `"1"`, "x"), false},
		{HandshakeRequest, req(token, "1", ""), false},
		{HandshakeResponse, resp("ok", ""), true},
		{HandshakeResponse, resp("error", "invalid token"), true},
		{HandshakeResponse, resp("error", ""), false},
		{HandshakeResponse, resp("maybe", ""), false},
	}
	for _, tc := range cases {
		err := Validate(tc.schema, []byte(tc.doc))
		if (err == nil) != tc.ok {
			t.Errorf("%s on %s: got %v; want ok=%v", tc.schema, tc.doc, err, tc.ok)
		}
	}
}

// TestControlBodies validates the control contract's Go types as
// encoding/json renders them.
func TestControlBodies(t *testing.T) {
	cases := []struct {
		schema string
		body   any
		ok     bool
	}{
		{ControlUnloadRequest, control.UnloadRequest{Capsule: "echo",
			Reason: events.UnloadIdle, IfIdle: true}, true},
		{ControlUnloadRequest, control.UnloadRequest{Capsule: "echo", Instance: "i1",
			Reason: events.UnloadRequest}, true},
		{ControlUnloadRequest, control.UnloadRequest{Capsule: "echo", Reason: "crash"}, false},
		{ControlUnloadRequest, control.UnloadRequest{Reason: events.UnloadIdle}, false},
		{ControlLoadRequest, control.LoadRequest{Capsule: "echo"}, true},
		{ControlLoadRequest, control.LoadRequest{}, false},
		{ControlReply, control.Reply{OK: true, Node: "n1", Instance: "i1", Streams: 2}, true},
		{ControlReply, control.Reply{OK: false, Error: "instance has 2 open streams",
			Node: "n1", Streams: 2}, true},
		{ControlReply, control.Reply{OK: false, Node: "n1"}, false},
		{ControlReply, control.Reply{OK: true, Node: "n1", List: []control.InstanceInfo{
			{Capsule: "echo", Instance: "i1", Loaded: true, Streams: 1,
				Socket: "/root/.astrid/run/echo.sock", Since: "2026-01-02T03:04:05Z"},
			{Capsule: "clock"},
		}}, true},
		{ControlReply, control.Reply{OK: true, Node: "n1", List: []control.InstanceInfo{
			{Capsule: "echo", Since: "noon"},
		}}, false},
	}
	for i, tc := range cases {
		data, err := json.Marshal(tc.body)
		if err != nil {
			t.Fatal(err)
		}
		err = Validate(tc.schema, data)
		if (err == nil) != tc.ok {
			t.Errorf("case %d: %s on %s: got %v; want ok=%v", i, tc.schema, data, err, tc.ok)
		}
	}
}

func TestValidateBounds(t *testing.T) {
	big := `{"capsule":"` + strings.Repeat("a", MaxDocument) + `"}`
	if err := Validate(ControlLoadRequest, []byte(big)); err == nil ||
		!strings.Contains(err.Error(), "exceeds") {
		t.Errorf("oversize document: %v; want a size error", err)
	}
}
