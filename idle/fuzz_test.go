package idle

import (
	"bytes"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/events"
)

// FuzzProjection feeds arbitrary bodies through DecodeBody and Apply. The
// input is lines; each line's first byte picks the headers (node,
// instance, message id) from small pools so that events collide, the rest
// is the body. Apply must never panic, and the projection must stay
// consistent: no negative count, an idle clock exactly when idle, Len
// matching the instances.
func FuzzProjection(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Add([]byte("\x00{}\n\x01{\"topic\":\"x\"}"))
	f.Add([]byte{})

	nodes := []string{"n1", "n2", "bad.node"}
	insts := []string{"a", "b", "c", ""}
	ids := []string{"", "m1", "m2", "m3"}

	f.Fuzz(func(t *testing.T, data []byte) {
		p := NewProjection(ProjectionConfig{MaxInstances: 16, DedupeSize: 8,
			TombstoneSize: 4})
		now := t0
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			h, body := line[0], line[1:]
			ev, err := events.DecodeBody(body)
			if err != nil {
				continue
			}
			ev.Node = nodes[int(h)%len(nodes)]
			ev.Instance = insts[int(h>>2)%len(insts)]
			ev.Capsule = "echo"
			ev.MsgID = ids[int(h>>4)%len(ids)]
			ev.Stream = "1"
			now = now.Add(time.Duration(h) * time.Millisecond)

			p.Apply(ev, now)
			p.Due(now)
			p.Expire(now)
			checkConsistent(t, p)
		}
	})
}

func checkConsistent(t *testing.T, p *Projection) {
	t.Helper()
	all := p.Instances()
	if len(all) != p.Len() {
		t.Fatalf("Len %d; got %d instances", p.Len(), len(all))
	}
	if len(all) > p.cfg.MaxInstances {
		t.Fatalf("%d instances; bound %d", len(all), p.cfg.MaxInstances)
	}
	for _, st := range all {
		if st.Streams < 0 {
			t.Fatalf("%s/%s: %d streams", st.Node, st.Instance, st.Streams)
		}
		if (st.Streams == 0) == st.IdleSince.IsZero() {
			t.Fatalf("%s/%s: %d streams but idle since %v", st.Node, st.Instance,
				st.Streams, st.IdleSince)
		}
	}
}

// fuzzSeeds are real encoded events, one session of one node per seed.
func fuzzSeeds(f *testing.F) [][]byte {
	session := []events.Event{
		loaded("n1", "a", 1, 1000),
		connect("n1", "a", "1", 2),
		connect("n1", "a", "2", 3),
		disconnect("n1", "a", "1", 4),
		heartbeat("n1", 5, 100, status("a", 1), status("b", 0)),
		disconnect("n1", "a", "2", 6),
		unloaded("n1", "a", 7),
		connect("n1", "a", "3", 8),
	}
	var all bytes.Buffer
	var seeds [][]byte
	for i, ev := range session {
		body, err := events.Encode(&ev)
		if err != nil {
			f.Fatalf("encoding seed: %v", err)
		}
		line := append([]byte{byte(i * 4)}, body...)
		seeds = append(seeds, line)
		all.Write(line)
		all.WriteByte('\n')
	}
	return append(seeds, all.Bytes())
}
