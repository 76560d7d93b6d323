package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// MaxMessage bounds the body size Decode accepts.
const MaxMessage = 1 << 20

// ErrMalformed is wrapped by every Decode error.
var ErrMalformed = errors.New("malformed event")

// marshalPayload renders p as a JSON object whose first field is "type".
func marshalPayload(p Payload) (json.RawMessage, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	// Every payload is a JSON object; splice "type" in front of its fields.
	t, _ := json.Marshal(p.PayloadType())
	var b bytes.Buffer
	b.Grow(len(body) + len(t) + 10)
	b.WriteString(`{"type":`)
	b.Write(t)
	if len(body) > 2 {
		b.WriteByte(',')
		b.Write(body[1:])
	} else {
		b.WriteByte('}')
	}
	return b.Bytes(), nil
}

// Encode renders ev's body as IpcMessage JSON.
func Encode(ev *Event) ([]byte, error) {
	raw, err := marshalPayload(ev.Payload)
	if err != nil {
		return nil, fmt.Errorf("encoding %s payload: %w", ev.Topic, err)
	}
	return json.Marshal(Message{
		Topic:     ev.Topic,
		Payload:   raw,
		SourceID:  ev.SourceID,
		Timestamp: ev.Timestamp.UTC().Format(time.RFC3339Nano),
		Seq:       ev.Seq,
	})
}

// Decode parses a NATS message into an Event. A malformed body, a topic
// that differs from the subject, or a known payload type with bad fields is
// an error wrapping ErrMalformed. An unknown payload type is not an error:
// it decodes to Unknown.
func Decode(m *nats.Msg) (Event, error) {
	ev, err := DecodeBody(m.Data)
	if err != nil {
		return Event{}, err
	}
	if ev.Topic != m.Subject {
		return Event{}, fmt.Errorf("%w: topic %q sent on subject %q",
			ErrMalformed, ev.Topic, m.Subject)
	}
	if m.Header != nil {
		ev.MsgID = m.Header.Get(HeaderMsgID)
		ev.Node = m.Header.Get(HeaderNode)
		ev.Capsule = m.Header.Get(HeaderCapsule)
		ev.Instance = m.Header.Get(HeaderInstance)
		ev.Stream = m.Header.Get(HeaderStream)
	}
	return ev, nil
}

// DecodeBody parses an IpcMessage body without headers.
func DecodeBody(data []byte) (Event, error) {
	if len(data) > MaxMessage {
		return Event{}, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(data), MaxMessage)
	}
	if ev, ok := decodeFast(data); ok {
		return ev, nil
	}
	return decodeFull(data)
}

// decodeFull decodes any body, well-formed or not, and words the error.
func decodeFull(data []byte) (Event, error) {
	// json.Unmarshal scans the body once less than a Decoder; the Decoder
	// runs only for a body Unmarshal rejects, to keep its error messages
	// (and its acceptance of a stray closing bracket after the message).
	var msg Message
	if json.Unmarshal(data, &msg) != nil {
		msg = Message{}
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&msg); err != nil {
			return Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if dec.More() {
			return Event{}, fmt.Errorf("%w: trailing data after message", ErrMalformed)
		}
	}
	if msg.Topic == "" {
		return Event{}, fmt.Errorf("%w: missing topic", ErrMalformed)
	}
	ts, err := time.Parse(time.RFC3339Nano, msg.Timestamp)
	if err != nil {
		return Event{}, fmt.Errorf("%w: timestamp: %v", ErrMalformed, err)
	}
	// An offset can push a year-0000 time out of the four-digit years
	// that RFC 3339 (and so Encode) can write.
	if y := ts.UTC().Year(); y < 1 || y > 9999 {
		return Event{}, fmt.Errorf("%w: timestamp %q is out of range in UTC", ErrMalformed,
			msg.Timestamp)
	}
	p, err := decodePayload(msg.Payload)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %s payload: %v", ErrMalformed, msg.Topic, err)
	}
	return Event{
		Topic:     msg.Topic,
		Payload:   p,
		SourceID:  msg.SourceID,
		Timestamp: ts,
		Seq:       msg.Seq,
	}, nil
}

// fastMessage is a Message whose payload decodes in the same pass.
type fastMessage struct {
	Topic     string        `json:"topic"`
	Payload   payloadFields `json:"payload"`
	Signature *string       `json:"signature"`
	SourceID  string        `json:"source_id"`
	Timestamp string        `json:"timestamp"`
	Seq       uint64        `json:"seq"`
}

// decodeFast decodes a well-formed event of a known payload type in one
// scan of the body, which is what a monitor replaying history sees almost
// always. Anything else (malformed, an unknown payload type) reports false
// and takes the full path, which words the errors and keeps raw payloads.
func decodeFast(data []byte) (Event, bool) {
	var m fastMessage
	if json.Unmarshal(data, &m) != nil || m.Topic == "" || m.Payload.Type == nil {
		return Event{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Timestamp)
	if err != nil {
		return Event{}, false
	}
	if y := ts.UTC().Year(); y < 1 || y > 9999 {
		return Event{}, false
	}
	p, known, err := m.Payload.typed()
	if !known || err != nil {
		return Event{}, false
	}
	return Event{Topic: m.Topic, Payload: p, SourceID: m.SourceID, Timestamp: ts,
		Seq: m.Seq}, true
}

// payloadFields holds the fields of every payload type, so that one
// Unmarshal decodes any of them.
type payloadFields struct {
	Type          *string          `json:"type"`
	Reason        string           `json:"reason"`
	Capsule       string           `json:"capsule"`
	Instance      string           `json:"instance"`
	Node          string           `json:"node"`
	IdleTimeoutMS int64            `json:"idle_timeout_ms"`
	StreamsClosed int              `json:"streams_closed"`
	IntervalMS    int64            `json:"interval_ms"`
	Instances     []InstanceStatus `json:"instances"`
}

// decodePayload decodes raw in one pass when it can. A payload the union
// rejects (a field of one type holding another type's wrong kind of value,
// a missing type) goes the type-by-type way, which decides and words the
// error exactly as before.
func decodePayload(raw json.RawMessage) (Payload, error) {
	var f payloadFields
	if json.Unmarshal(raw, &f) != nil || f.Type == nil {
		return decodePayloadByType(raw)
	}
	p, known, err := f.typed()
	if !known {
		return Unknown{Type: *f.Type, Raw: raw}, nil
	}
	return p, err
}

// typed builds the payload of f's type. known is false for a type this
// version does not know.
func (f *payloadFields) typed() (p Payload, known bool, err error) {
	switch *f.Type {
	case TypeConnect:
		return Connect{}, true, nil
	case TypeDisconnect:
		p := Disconnect{Reason: f.Reason}
		return p, true, checkDisconnect(p)
	case TypeLoaded:
		p := Loaded{Capsule: f.Capsule, Instance: f.Instance, Node: f.Node, Reason: f.Reason,
			IdleTimeoutMS: f.IdleTimeoutMS}
		return p, true, checkLoaded(p)
	case TypeUnloaded:
		p := Unloaded{Capsule: f.Capsule, Instance: f.Instance, Node: f.Node, Reason: f.Reason,
			StreamsClosed: f.StreamsClosed}
		return p, true, checkUnloaded(p)
	case TypeHeartbeat:
		p := Heartbeat{Node: f.Node, IntervalMS: f.IntervalMS, Instances: f.Instances}
		return p, true, checkHeartbeat(p)
	default:
		return nil, false, nil
	}
}

func decodePayloadByType(raw json.RawMessage) (Payload, error) {
	var head struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, err
	}
	if head.Type == nil {
		return nil, errors.New("missing type")
	}
	switch *head.Type {
	case TypeConnect:
		return Connect{}, nil
	case TypeDisconnect:
		var p Disconnect
		if err := json.Unmarshal(raw, &p); err != nil {
			return p, err
		}
		return p, checkDisconnect(p)
	case TypeLoaded:
		var p Loaded
		if err := json.Unmarshal(raw, &p); err != nil {
			return p, err
		}
		return p, checkLoaded(p)
	case TypeUnloaded:
		var p Unloaded
		if err := json.Unmarshal(raw, &p); err != nil {
			return p, err
		}
		return p, checkUnloaded(p)
	case TypeHeartbeat:
		var p Heartbeat
		if err := json.Unmarshal(raw, &p); err != nil {
			return p, err
		}
		return p, checkHeartbeat(p)
	default:
		return Unknown{Type: *head.Type, Raw: raw}, nil
	}
}

func checkDisconnect(p Disconnect) error {
	if p.Reason == "" {
		return errors.New("reason is required")
	}
	return nil
}

func checkLoaded(p Loaded) error {
	if p.Capsule == "" || p.Instance == "" || p.Reason == "" {
		return errors.New("capsule, instance and reason are required")
	}
	return nil
}

func checkUnloaded(p Unloaded) error {
	if p.Capsule == "" || p.Instance == "" || p.Reason == "" {
		return errors.New("capsule, instance and reason are required")
	}
	if p.StreamsClosed < 0 {
		return errors.New("streams_closed is negative")
	}
	return nil
}

func checkHeartbeat(p Heartbeat) error {
	if p.Node == "" {
		return errors.New("node is required")
	}
	for _, in := range p.Instances {
		if in.Instance == "" || in.Streams < 0 {
			return errors.New("instance entries need an id and a count >= 0")
		}
	}
	return nil
}
