package node

import (
	"errors"
	"time"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/runtime"
)

// crash backoff: a capsule that crashes within crashWindow of its load is
// reactivated only after a delay that doubles per such crash, up to
// maxBackoff.
const (
	crashWindow  = 5 * time.Second
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 30 * time.Second
)

// crashState is what the node remembers of a capsule that crashed.
type crashState struct {
	backoff time.Duration
	until   time.Time
	timer   *time.Timer
}

// activate is the gateway's hook for a stream that waits on a capsule with
// no instance: socket activation. The runtime instantiates once however
// many clients arrive together.
func (h *Host) activate(capsule string) {
	if h.ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	cs := h.crashes[capsule]
	if cs != nil && time.Now().Before(cs.until) {
		// The capsule crashed soon after its last load; a timer is set
		// to try again once the backoff ends.
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()

	_, err := h.rt.Load(h.ctx, capsule, events.LoadActivation)
	switch {
	case err == nil, errors.Is(err, runtime.ErrAlreadyLoaded):
	case h.ctx.Err() != nil:
	default:
		h.log.Error("activation failed", "capsule", capsule, "err", err)
	}
}

// exited handles an instance that ended by itself (a crash). Waiting
// clients get a new instance after a backoff that grows while the capsule
// keeps crashing soon after its load.
func (h *Host) exited(info runtime.InstanceInfo, err error) {
	if h.ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	cs := h.crashes[info.Capsule]
	if cs == nil {
		cs = &crashState{}
		h.crashes[info.Capsule] = cs
	}
	if time.Since(info.Since) < crashWindow {
		cs.backoff = min(max(cs.backoff*2, firstBackoff), maxBackoff)
	} else {
		cs.backoff = 0
	}
	cs.until = time.Now().Add(cs.backoff)
	delay := cs.backoff
	if cs.timer != nil {
		cs.timer.Stop()
	}
	cs.timer = time.AfterFunc(delay, func() {
		if h.gw.Waiting(info.Capsule) > 0 {
			h.activate(info.Capsule)
		}
	})
	h.mu.Unlock()
	h.log.Warn("capsule crashed", "capsule", info.Capsule, "instance", info.Instance,
		"err", err, "reactivate_after", delay)
}
