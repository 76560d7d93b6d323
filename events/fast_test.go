package events

import (
	"reflect"
	"testing"
	"time"
)

// FuzzDecodeFastAgrees: whatever the one-pass decoder accepts, the full
// decoder decodes to the same event.
func FuzzDecodeFastAgrees(f *testing.F) {
	for _, ev := range []Event{
		{Topic: SubjectConnected, Payload: Connect{}, SourceID: "i", Seq: 1},
		{Topic: SubjectDisconnect, Payload: Disconnect{Reason: ReasonPeerClosed}, Seq: 2},
		{Topic: SubjectLoaded, Payload: Loaded{Capsule: "c", Instance: "i", Node: "n",
			Reason: LoadStart, IdleTimeoutMS: 5}, Seq: 3},
		{Topic: SubjectUnloaded, Payload: Unloaded{Capsule: "c", Instance: "i", Node: "n",
			Reason: UnloadIdle, StreamsClosed: 2}, Seq: 4},
		{Topic: SubjectHeartbeat, Payload: Heartbeat{Node: "n", IntervalMS: 5,
			Instances: []InstanceStatus{{Capsule: "c", Instance: "i", Streams: 1}}}, Seq: 5},
	} {
		ev.Timestamp = time.Date(2026, 12, 3, 14, 0, 0, 5, time.UTC)
		body, err := Encode(&ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte(`{"topic":"t","payload":{"type":"heartbeat","node":"n","instances":"x"},` +
		`"timestamp":"2026-12-03T14:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeFast(data)
		if !ok {
			return
		}
		full, err := decodeFull(data)
		if err != nil {
			t.Fatalf("fast path accepted what the full path rejects (%v): %q", err, data)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("fast %+v; full %+v; input %q", fast, full, data)
		}
	})
}
