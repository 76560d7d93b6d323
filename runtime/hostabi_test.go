package runtime

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
)

// TestHostileCapsule: every out-of-bounds or overflowing pointer/length
// pair gets a code (ErrBadPointer), never a trap; the instance lives on.
func TestHostileCapsule(t *testing.T) {
	t.Parallel()
	env := newEnv(t, false)
	env.add(t, multiSrc, "hostile", "")
	info, err := env.r.Load(context.Background(), "hostile", events.LoadRequest)
	if err != nil {
		t.Fatal(err)
	}
	env.logs.waitFor(t, "hostile: done")

	got := map[string]int32{}
	for _, r := range env.logs.find("hostile ") {
		f := strings.Fields(r.Msg)
		if len(f) != 4 {
			continue
		}
		code, err := strconv.Atoi(f[3])
		if err != nil {
			t.Fatalf("bad report %q", r.Msg)
		}
		got[f[1]+" "+f[2]] = int32(code)
	}

	want := map[string]abi.Errno{
		"log level":              abi.ErrInvalid,
		"net_wait zero-cap":      abi.ErrInvalid,
		"net_bind_unix bad-name": abi.ErrInvalid,
	}
	for _, pair := range []string{"far", "wrap", "huge", "past"} {
		for _, fn := range []string{"log", "last_error", "instance_id", "net_bind_unix",
			"net_read.buf", "net_read.need", "net_write", "net_wait"} {
			if fn == "net_read.need" && pair == "huge" {
				continue // the capsule skips it: its pointer is 0, which is valid
			}
			want[fn+" "+pair] = abi.ErrBadPointer
		}
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: no report", k)
		} else if abi.Errno(g) != w {
			t.Errorf("%s: got %d (%v); want %d (%v)", k, g, abi.Errno(g), int32(w), w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d reports; want %d", len(got), len(want))
	}

	if l := env.r.List(); len(l) != 1 || l[0].Instance != info.Instance {
		t.Fatalf("hostile instance is gone: %+v", l)
	}
	if _, err := env.r.Unload(context.Background(), UnloadRequest{Capsule: "hostile"}); err != nil {
		t.Fatal(err)
	}
	if env.exitCount() != 0 {
		t.Error("hostile instance crashed")
	}
}

// TestCapabilityGate: binding a socket the manifest does not grant is
// refused with ErrPermission and a security warning; a granted one passes
// the gate (and, with no gateway in this runtime, is not found).
func TestCapabilityGate(t *testing.T) {
	t.Parallel()
	env := newEnv(t, false)
	env.add(t, multiSrc, "nocap", "[capabilities]\nnet_bind = [\"unix:allowed\"]\n")
	info, err := env.r.Load(context.Background(), "nocap", events.LoadRequest)
	if err != nil {
		t.Fatal(err)
	}

	env.logs.waitFor(t, "nocap: bind allowed: "+abi.ErrNotFound.Error())
	env.logs.waitFor(t, "nocap: bind secret: "+abi.ErrPermission.Error())
	env.logs.waitFor(t, "nocap: last error: net_bind_unix: "+abi.ErrPermission.Error())

	recs := env.logs.find("net_bind_unix refused")
	if len(recs) != 1 {
		t.Fatalf("got %d refusal logs; want 1", len(recs))
	}
	r := recs[0]
	if r.Level.String() != "WARN" || r.Attrs["security_event"] != true ||
		r.Attrs["socket"] != "secret" || r.Attrs["capsule"] != "nocap" ||
		r.Attrs["instance"] != info.Instance {
		t.Errorf("got refusal log %+v; want a warning with security_event, socket, "+
			"capsule, instance", r)
	}
}
