package idle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
)

// maxReply bounds the reply body the monitor decodes.
const maxReply = 64 << 10

// unloadState is the monitor's dealings with one idle instance's node.
type unloadState struct {
	node     string
	instance string
	inFlight bool      // a request is out; never send a second one
	failures int       // consecutive failures, for the backoff
	retryAt  time.Time // no request before
}

type unloadResult struct {
	state InstanceState
	reply control.Reply
	err   error
}

// request asks the owning node to unload an idle instance, if it is still
// idle by the node's own count, and hands the outcome back to Run.
func (m *Monitor) request(ctx context.Context, st InstanceState, results chan<- unloadResult) {
	res := unloadResult{state: st}
	body, err := json.Marshal(control.UnloadRequest{
		Capsule:  st.Capsule,
		Instance: st.Instance,
		Reason:   events.UnloadIdle,
		IfIdle:   true,
	})
	if err != nil {
		panic("BUG: an UnloadRequest always encodes: " + err.Error())
	}

	rctx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
	msg, err := m.nc.RequestWithContext(rctx, control.Subject(st.Node, control.VerbUnload), body)
	cancel()
	if err != nil {
		res.err = err
	} else {
		res.reply, res.err = decodeReply(msg.Data, msg.Header.Get("Nats-Service-Error"))
	}

	select {
	case results <- res:
	case <-ctx.Done():
	}
}

// decodeReply reads a control.Reply. A refusal from the node's micro
// service carries its Reply in the body too; serviceErr (the micro error
// header) stands in for a body that is missing.
func decodeReply(data []byte, serviceErr string) (control.Reply, error) {
	var rep control.Reply
	if len(data) > maxReply {
		return rep, fmt.Errorf("reply of %d bytes exceeds %d", len(data), maxReply)
	}
	if len(data) == 0 {
		if serviceErr != "" {
			return control.Reply{Error: serviceErr}, nil
		}
		return rep, errors.New("empty reply")
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		return rep, fmt.Errorf("decoding reply: %w", err)
	}
	return rep, nil
}

// settle applies the outcome of an unload request.
func (m *Monitor) settle(r unloadResult) {
	st := r.state
	key := tombKey(st.Node, st.Instance)
	m.inFlight--
	u := m.unloads[key]
	if u == nil {
		panic("BUG: unload result for an instance with no request out")
	}
	u.inFlight = false
	now := m.now()
	attrs := []any{"node", st.Node, "capsule", st.Capsule, "instance", st.Instance}

	switch {
	case r.err != nil:
		// No reply (node gone, control service down) or a garbled one:
		// ask again later, backing off.
		wait := m.backoff(u)
		m.log.Warn("idle unload request failed; will retry",
			append(attrs, "err", r.err, "retry_in", wait)...)

	case r.reply.OK:
		m.mu.Lock()
		m.proj.MarkUnloaded(st.Node, st.Instance, now)
		m.mu.Unlock()
		delete(m.unloads, key)
		m.log.Info("idle instance unloaded", append(attrs,
			"idle_for", now.Sub(st.IdleSince).Round(time.Millisecond),
			"timeout", st.Timeout)...)

	case r.reply.Streams > 0:
		// The node is the authority: streams are open that the events did
		// not tell. Take its count; the idle clock restarts when they end.
		m.mu.Lock()
		m.proj.Resync(st.Node, st.Instance, r.reply.Streams, now)
		m.mu.Unlock()
		u.failures = 0
		u.retryAt = time.Time{}
		m.log.Info("node refused idle unload: streams open; count re-synced",
			append(attrs, "streams", r.reply.Streams)...)

	default:
		wait := m.backoff(u)
		m.log.Warn("node refused idle unload; will retry",
			append(attrs, "err", r.reply.Error, "retry_in", wait)...)
	}
}

// backoff schedules the next attempt after a failure: RequestTimeout,
// doubling, at most maxBackoff.
func (m *Monitor) backoff(u *unloadState) time.Duration {
	u.failures++
	wait := max(m.cfg.RequestTimeout, 100*time.Millisecond)
	for i := 1; i < u.failures && wait < maxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, maxBackoff)
	u.retryAt = m.now().Add(wait)
	return wait
}
