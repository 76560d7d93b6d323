package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// Publisher stamps and publishes the events of one node. It is safe for
// concurrent use. Seq is assigned and the message handed to nats.go under
// one lock, so subscribers see a node's events in seq order.
type Publisher struct {
	nc   *nats.Conn
	node string
	log  *slog.Logger
	now  func() time.Time

	mu  sync.Mutex
	seq uint64 // guarded by mu; last seq assigned
}

// NewPublisher returns a Publisher for node that publishes on nc.
func NewPublisher(nc *nats.Conn, node string, log *slog.Logger) *Publisher {
	return &Publisher{nc: nc, node: node, log: log, now: time.Now}
}

// Node returns the node id stamped on every event.
func (p *Publisher) Node() string { return p.node }

// Publish stamps ev (Seq, Timestamp, MsgID, Node) and publishes it. A
// failure is returned and logged; nats.go buffers publishes while it
// reconnects, so a short outage loses nothing until its buffer fills.
func (p *Publisher) Publish(ev *Event) error {
	ev.Node = p.node
	ev.MsgID = uuid.NewString()

	m := &nats.Msg{Subject: ev.Topic, Header: nats.Header{}}
	m.Header.Set(HeaderMsgID, ev.MsgID)
	m.Header.Set(HeaderNode, p.node)
	if ev.Capsule != "" {
		m.Header.Set(HeaderCapsule, ev.Capsule)
	}
	if ev.Instance != "" {
		m.Header.Set(HeaderInstance, ev.Instance)
	}
	if ev.Stream != "" {
		m.Header.Set(HeaderStream, ev.Stream)
	}

	p.mu.Lock()
	p.seq++
	ev.Seq = p.seq
	ev.Timestamp = p.now().UTC()
	data, err := Encode(ev)
	if err == nil {
		m.Data = data
		err = p.nc.PublishMsg(m)
	}
	p.mu.Unlock()

	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, nats.ErrReconnectBufExceeded) {
			// The event is gone: the reconnect buffer is full.
			level = slog.LevelError
		}
		p.log.Log(context.Background(), level, "event publish failed",
			"topic", ev.Topic, "seq", ev.Seq, "err", err)
		return fmt.Errorf("publishing %s: %w", ev.Topic, err)
	}
	return nil
}

// Connected publishes client.v1.connected for a new stream.
func (p *Publisher) Connected(capsule, instance string, stream int32) error {
	return p.Publish(&Event{
		Topic: SubjectConnected, Payload: Connect{}, SourceID: instance,
		Capsule: capsule, Instance: instance, Stream: streamID(stream),
	})
}

// Disconnected publishes client.v1.disconnect for a stream that ended.
func (p *Publisher) Disconnected(capsule, instance string, stream int32, reason string) error {
	return p.Publish(&Event{
		Topic: SubjectDisconnect, Payload: Disconnect{Reason: reason}, SourceID: instance,
		Capsule: capsule, Instance: instance, Stream: streamID(stream),
	})
}

// Loaded publishes capsule.v1.loaded. idleTimeout is the timeout the node
// resolved for the capsule (0: never unload).
func (p *Publisher) Loaded(capsule, instance, reason string, idleTimeout time.Duration) error {
	return p.Publish(&Event{
		Topic: SubjectLoaded,
		Payload: Loaded{Capsule: capsule, Instance: instance, Node: p.node, Reason: reason,
			IdleTimeoutMS: idleTimeout.Milliseconds()},
		SourceID: instance, Capsule: capsule, Instance: instance,
	})
}

// Unloaded publishes capsule.v1.unloaded.
func (p *Publisher) Unloaded(capsule, instance, reason string, streamsClosed int) error {
	return p.Publish(&Event{
		Topic: SubjectUnloaded,
		Payload: Unloaded{Capsule: capsule, Instance: instance, Node: p.node,
			Reason: reason, StreamsClosed: streamsClosed},
		SourceID: instance, Capsule: capsule, Instance: instance,
	})
}

// Heartbeat publishes node.v1.heartbeat with the node's authoritative
// stream counts.
func (p *Publisher) Heartbeat(interval time.Duration, instances []InstanceStatus) error {
	if instances == nil {
		instances = []InstanceStatus{}
	}
	return p.Publish(&Event{
		Topic: SubjectHeartbeat,
		Payload: Heartbeat{Node: p.node, IntervalMS: interval.Milliseconds(),
			Instances: instances},
		SourceID: p.node,
	})
}

func streamID(stream int32) string { return strconv.FormatInt(int64(stream), 10) }

// Subscribe delivers the decoded events on subject (wildcards allowed) to
// h. A malformed message is logged with its subject and skipped; it never
// reaches h and never stops the subscription.
func Subscribe(nc *nats.Conn, subject string, log *slog.Logger,
	h func(Event)) (*nats.Subscription, error) {
	return nc.Subscribe(subject, func(m *nats.Msg) {
		ev, err := Decode(m)
		if err != nil {
			log.Warn("dropping malformed event", "subject", m.Subject, "err", err)
			return
		}
		h(ev)
	})
}
