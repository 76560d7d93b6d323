package events

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

var when = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)

func roundTripEvents() []*Event {
	return []*Event{
		{Topic: SubjectConnected, Payload: Connect{}, SourceID: "i1", Seq: 1},
		{Topic: SubjectDisconnect, Payload: Disconnect{Reason: ReasonFrameTooLarge},
			SourceID: "i1", Seq: 2},
		{Topic: SubjectLoaded, Payload: Loaded{Capsule: "echo", Instance: "i1", Node: "n1",
			Reason: LoadActivation, IdleTimeoutMS: 300000}, SourceID: "i1", Seq: 3},
		{Topic: SubjectUnloaded, Payload: Unloaded{Capsule: "echo", Instance: "i1", Node: "n1",
			Reason: UnloadIdle, StreamsClosed: 4}, SourceID: "i1", Seq: 4},
		{Topic: SubjectHeartbeat, Payload: Heartbeat{Node: "n1", IntervalMS: 5000,
			Instances: []InstanceStatus{{Capsule: "echo", Instance: "i1", Streams: 2,
				IdleTimeoutMS: 1000}}}, SourceID: "n1", Seq: 5},
		{Topic: SubjectHeartbeat, Payload: Heartbeat{Node: "n1", IntervalMS: 5000,
			Instances: []InstanceStatus{}}, SourceID: "n1", Seq: 6},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, ev := range roundTripEvents() {
		t.Run(ev.Topic, func(t *testing.T) {
			ev.Timestamp = when.In(time.FixedZone("CET", 3600))
			data, err := Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), `"timestamp":"2026-01-02T03:04:05.123456789Z"`) {
				t.Errorf("encoded %s; want the timestamp in UTC ending in Z", data)
			}
			if !strings.Contains(string(data), `"signature":null`) {
				t.Errorf("encoded %s; want signature null", data)
			}
			if !strings.HasPrefix(string(data), `{"topic":"`+ev.Topic+`","payload":{"type":"`+
				ev.Payload.PayloadType()+`"`) {
				t.Errorf("encoded %s; want topic first and payload type first", data)
			}

			got, err := Decode(&nats.Msg{Subject: ev.Topic, Data: data})
			if err != nil {
				t.Fatalf("Decode(%s): %v", data, err)
			}
			if !reflect.DeepEqual(got.Payload, ev.Payload) {
				t.Errorf("payload %#v; want %#v", got.Payload, ev.Payload)
			}
			if got.Topic != ev.Topic || got.SourceID != ev.SourceID || got.Seq != ev.Seq ||
				!got.Timestamp.Equal(when) {
				t.Errorf("got %+v; want %+v", got, ev)
			}
		})
	}
}

const validBody = `{"topic":"client.v1.disconnect","payload":{"type":"disconnect",` +
	`"reason":"peer_closed"},"signature":null,"source_id":"i1",` +
	`"timestamp":"2026-01-02T03:04:05Z","seq":7}`

func TestDecodeRejects(t *testing.T) {
	body := func(topic, payload string) string {
		return `{"topic":"` + topic + `","payload":` + payload +
			`,"signature":null,"source_id":"i1","timestamp":"2026-01-02T03:04:05Z","seq":1}`
	}
	cases := []struct {
		name    string
		subject string
		data    string
		want    string
	}{
		{"not JSON", SubjectDisconnect, "hello", "invalid character"},
		{"empty", SubjectDisconnect, "", "EOF"},
		{"trailing data", SubjectDisconnect, validBody + `{"x":1}`, "trailing data"},
		{"missing topic", SubjectDisconnect,
			strings.Replace(validBody, `"topic":"client.v1.disconnect",`, "", 1), "missing topic"},
		{"topic differs from subject", SubjectConnected, validBody, "sent on subject"},
		{"bad timestamp", SubjectDisconnect,
			strings.Replace(validBody, "2026-01-02T03:04:05Z", "yesterday", 1), "timestamp"},
		{"missing timestamp", SubjectDisconnect,
			strings.Replace(validBody, `"timestamp":"2026-01-02T03:04:05Z",`, "", 1), "timestamp"},
		{"missing payload", SubjectDisconnect,
			strings.Replace(validBody, `"payload":{"type":"disconnect","reason":"peer_closed"},`,
				"", 1), "payload"},
		{"payload not an object", SubjectDisconnect, body(SubjectDisconnect, `5`), "payload"},
		{"missing payload type", SubjectDisconnect,
			body(SubjectDisconnect, `{"reason":"peer_closed"}`), "missing type"},
		{"payload type not a string", SubjectDisconnect,
			body(SubjectDisconnect, `{"type":7}`), "payload"},
		{"seq not a number", SubjectDisconnect,
			strings.Replace(validBody, `"seq":7`, `"seq":"7"`, 1), "seq"},
		{"negative seq", SubjectDisconnect,
			strings.Replace(validBody, `"seq":7`, `"seq":-1`, 1), "seq"},
		{"disconnect reason a number", SubjectDisconnect,
			body(SubjectDisconnect, `{"type":"disconnect","reason":3}`), "reason"},
		{"disconnect without reason", SubjectDisconnect,
			body(SubjectDisconnect, `{"type":"disconnect"}`), "reason is required"},
		{"loaded capsule a number", SubjectLoaded,
			body(SubjectLoaded, `{"type":"capsule_loaded","capsule":1,"instance":"i",`+
				`"reason":"start"}`), "capsule"},
		{"loaded without instance", SubjectLoaded,
			body(SubjectLoaded, `{"type":"capsule_loaded","capsule":"e","reason":"start"}`),
			"required"},
		{"unloaded streams as string", SubjectUnloaded,
			body(SubjectUnloaded, `{"type":"capsule_unloaded","capsule":"e","instance":"i",`+
				`"reason":"idle","streams_closed":"3"}`), "streams_closed"},
		{"unloaded negative streams", SubjectUnloaded,
			body(SubjectUnloaded, `{"type":"capsule_unloaded","capsule":"e","instance":"i",`+
				`"reason":"idle","streams_closed":-3}`), "negative"},
		{"heartbeat without node", SubjectHeartbeat,
			body(SubjectHeartbeat, `{"type":"heartbeat","interval_ms":5}`), "node is required"},
		{"heartbeat instances not a list", SubjectHeartbeat,
			body(SubjectHeartbeat, `{"type":"heartbeat","node":"n","instances":"all"}`),
			"instances"},
		{"heartbeat negative streams", SubjectHeartbeat,
			body(SubjectHeartbeat, `{"type":"heartbeat","node":"n","instances":`+
				`[{"capsule":"e","instance":"i","streams":-1}]}`), "count >= 0"},
		{"oversize", SubjectDisconnect, validBody + strings.Repeat(" ", MaxMessage), "exceeds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(&nats.Msg{Subject: tc.subject, Data: []byte(tc.data)})
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v; want an error wrapping ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestDecodeUnknownType(t *testing.T) {
	data := `{"topic":"client.v2.poked","payload":{"type":"poke","strength":9},` +
		`"signature":null,"source_id":"i1","timestamp":"2026-01-02T03:04:05Z","seq":1}`
	ev, err := Decode(&nats.Msg{Subject: "client.v2.poked", Data: []byte(data)})
	if err != nil {
		t.Fatalf("unknown type: %v; want no error", err)
	}
	u, ok := ev.Payload.(Unknown)
	if !ok || u.Type != "poke" || string(u.Raw) != `{"type":"poke","strength":9}` {
		t.Errorf("payload %#v; want Unknown poke with its raw body", ev.Payload)
	}
}

func TestDecodeHeaders(t *testing.T) {
	m := &nats.Msg{Subject: SubjectDisconnect, Data: []byte(validBody), Header: nats.Header{}}
	m.Header.Set(HeaderMsgID, "m1")
	m.Header.Set(HeaderNode, "n1")
	m.Header.Set(HeaderCapsule, "echo")
	m.Header.Set(HeaderInstance, "i1")
	m.Header.Set(HeaderStream, "3")
	ev, err := Decode(m)
	if err != nil {
		t.Fatal(err)
	}
	if ev.MsgID != "m1" || ev.Node != "n1" || ev.Capsule != "echo" || ev.Instance != "i1" ||
		ev.Stream != "3" {
		t.Errorf("headers decoded as %+v", ev)
	}
}

func FuzzDecodeBody(f *testing.F) {
	for _, ev := range roundTripEvents() {
		ev.Timestamp = when
		data, err := Encode(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(validBody))
	f.Add([]byte(`{"topic":"x","payload":{"type":"poke"},"timestamp":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"topic":"x","payload":null,"timestamp":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"topic":"node.v1.heartbeat","payload":{"type":"heartbeat","node":"n",` +
		`"instances":[{"instance":"i","streams":1e3}]},"timestamp":"2026-01-02T03:04:05+01:00"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"topic":"a"}{}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeBody(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if ev.Topic == "" || ev.Payload == nil {
			t.Fatalf("decoded %+v without topic or payload", ev)
		}
		if _, ok := ev.Payload.(Unknown); ok {
			return
		}
		// A known payload survives a second trip unchanged.
		again, err := Encode(&ev)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", ev, err)
		}
		ev2, err := DecodeBody(again)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", again, err)
		}
		if !reflect.DeepEqual(ev2.Payload, ev.Payload) || ev2.Seq != ev.Seq ||
			!ev2.Timestamp.Equal(ev.Timestamp) {
			t.Fatalf("second trip changed %+v into %+v", ev, ev2)
		}
	})
}
