package idle

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/astrid-os/astrid-node/events"
)

// recorded is one event as a replay would hand it over: the encoded body
// plus the headers NATS carried with it.
type recorded struct {
	body                                   []byte
	msgID, node, capsule, instance, stream string
	at                                     time.Time
}

// history makes n events of a busy cluster: 8 nodes with up to 32
// instances each, streams opening and closing, now and then an unload and
// a fresh load, and a heartbeat from each node every 400 events or so.
// Seeded, so every run replays the same history.
func history(tb testing.TB, n int) []recorded {
	const nodes, perNode = 8, 32
	rng := rand.New(rand.NewPCG(1, 2))
	type live struct {
		capsule, id string
		streams     int
		nextStream  int32
	}
	type nodeHist struct {
		id        string
		seq       uint64
		instances []*live
	}
	ns := make([]*nodeHist, nodes)
	for i := range ns {
		ns[i] = &nodeHist{id: fmt.Sprintf("node-%d", i)}
	}

	out := make([]recorded, 0, n)
	clock := t0
	emit := func(nh *nodeHist, ev events.Event) {
		nh.seq++
		clock = clock.Add(50 * time.Microsecond)
		ev.Seq, ev.Timestamp = nh.seq, clock
		body, err := events.Encode(&ev)
		if err != nil {
			tb.Fatalf("encoding: %v", err)
		}
		out = append(out, recorded{body: body, msgID: uuid.NewString(), node: nh.id,
			capsule: ev.Capsule, instance: ev.Instance, stream: ev.Stream, at: clock})
	}

	for len(out) < n {
		nh := ns[rng.IntN(nodes)]
		switch r := rng.IntN(1000); {
		case r < 20: // heartbeat
			st := make([]events.InstanceStatus, 0, len(nh.instances))
			for _, in := range nh.instances {
				st = append(st, events.InstanceStatus{Capsule: in.capsule, Instance: in.id,
					Streams: in.streams, IdleTimeoutMS: 300_000})
			}
			emit(nh, events.Event{Topic: events.SubjectHeartbeat, Payload: events.Heartbeat{
				Node: nh.id, IntervalMS: 5000, Instances: st}})
		case len(nh.instances) < perNode && r < 60: // load
			in := &live{capsule: "capsule-" + strconv.Itoa(rng.IntN(100)),
				id: uuid.NewString()}
			nh.instances = append(nh.instances, in)
			emit(nh, events.Event{Topic: events.SubjectLoaded, Payload: events.Loaded{
				Capsule: in.capsule, Instance: in.id, Node: nh.id, Reason: events.LoadActivation,
				IdleTimeoutMS: 300_000}, Capsule: in.capsule, Instance: in.id})
		case len(nh.instances) == 0:
		default:
			k := rng.IntN(len(nh.instances))
			in := nh.instances[k]
			switch {
			case in.streams == 0 && r < 70: // unload
				nh.instances = append(nh.instances[:k], nh.instances[k+1:]...)
				emit(nh, events.Event{Topic: events.SubjectUnloaded,
					Payload: events.Unloaded{Capsule: in.capsule, Instance: in.id,
						Node: nh.id, Reason: events.UnloadIdle},
					Capsule: in.capsule, Instance: in.id})
			case in.streams > 0 && r%2 == 0: // disconnect
				in.streams--
				emit(nh, events.Event{Topic: events.SubjectDisconnect,
					Payload:  events.Disconnect{Reason: events.ReasonPeerClosed},
					SourceID: in.id, Capsule: in.capsule, Instance: in.id,
					Stream: strconv.Itoa(int(in.nextStream))})
			default: // connect
				in.streams++
				in.nextStream++
				emit(nh, events.Event{Topic: events.SubjectConnected, Payload: events.Connect{},
					SourceID: in.id, Capsule: in.capsule, Instance: in.id,
					Stream: strconv.Itoa(int(in.nextStream))})
			}
		}
	}
	return out
}

func decodeRecorded(tb testing.TB, r *recorded) events.Event {
	ev, err := events.DecodeBody(r.body)
	if err != nil {
		tb.Fatalf("decoding: %v", err)
	}
	ev.MsgID, ev.Node, ev.Capsule, ev.Instance, ev.Stream =
		r.msgID, r.node, r.capsule, r.instance, r.stream
	return ev
}

// BenchmarkRebuild measures how fast a monitor rebuilds its projection
// from recorded history: decode and apply per event (events/s; the goal
// is 200k/s), and, in the same run, apply alone on pre-decoded events,
// the ceiling that decoding leaves room for.
func BenchmarkRebuild(b *testing.B) {
	const n = 100_000
	h := history(b, n)
	decoded := make([]events.Event, len(h))
	for i := range h {
		decoded[i] = decodeRecorded(b, &h[i])
	}

	var p *Projection
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p = NewProjection(ProjectionConfig{})
		for i := range h {
			if p.Apply(decodeRecorded(b, &h[i]), h[i].at) != Applied {
				b.Fatalf("event %d not applied", i)
			}
		}
	}
	full := b.Elapsed()
	b.StopTimer()
	if p.Stats().Corrections != 0 {
		b.Fatalf("history is consistent, yet %d corrections", p.Stats().Corrections)
	}

	start := time.Now()
	for range b.N {
		q := NewProjection(ProjectionConfig{})
		for i := range decoded {
			q.Apply(decoded[i], h[i].at)
		}
	}
	applyOnly := time.Since(start)

	events := float64(n * b.N)
	b.ReportMetric(events/full.Seconds(), "events/s")
	b.ReportMetric(events/full.Seconds()/200_000, "x-goal")
	b.ReportMetric(events/applyOnly.Seconds(), "apply-events/s")
	b.ReportMetric(applyOnly.Seconds()/full.Seconds(), "apply-share")
}
