package node

import (
	"context"
	"errors"
	"time"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/runtime"
)

// controlHost adapts the Host to the control service.
type controlHost struct{ h *Host }

func (c controlHost) List() []control.InstanceInfo {
	loaded := map[string]runtime.InstanceInfo{}
	for _, in := range c.h.rt.List() {
		loaded[in.Capsule] = in
	}
	var out []control.InstanceInfo
	for _, cp := range c.h.rt.Capsules() {
		m := cp.Manifest
		info := control.InstanceInfo{Capsule: m.Name}
		if len(m.NetBind) > 0 {
			info.Socket = m.NetBind[0]
		}
		if in, ok := loaded[m.Name]; ok {
			info.Loaded, info.Instance, info.Streams = true, in.Instance, in.Streams
			info.Since = in.Since.UTC().Format(time.RFC3339)
		}
		out = append(out, info)
	}
	return out
}

func (c controlHost) Load(ctx context.Context, capsule string) control.Reply {
	in, err := c.h.rt.Load(ctx, capsule, events.LoadRequest)
	if err != nil && !errors.Is(err, runtime.ErrAlreadyLoaded) {
		return control.Reply{Error: err.Error()}
	}
	return control.Reply{OK: true, Instance: in.Instance, Streams: in.Streams}
}

func (c controlHost) Unload(ctx context.Context, req control.UnloadRequest) control.Reply {
	res, err := c.h.rt.Unload(ctx, runtime.UnloadRequest{Capsule: req.Capsule,
		Instance: req.Instance, Reason: req.Reason, IfIdle: req.IfIdle})
	if err != nil {
		rep := control.Reply{Error: err.Error(), Instance: req.Instance}
		if errors.Is(err, runtime.ErrBusy) {
			rep.Streams = c.h.gw.Active(req.Capsule)
		}
		return rep
	}
	return control.Reply{OK: true, Instance: res.Instance, Streams: res.StreamsClosed}
}

func (c controlHost) Stats() control.Stats {
	st := control.Stats{Capsules: len(c.h.rt.Capsules()),
		UptimeSec: int64(time.Since(c.h.start).Seconds())}
	for _, in := range c.h.rt.List() {
		st.Loaded++
		st.Streams += in.Streams
	}
	return st
}
