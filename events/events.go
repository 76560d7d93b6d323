// Package events is the event contract of astrid-node: the NATS subjects,
// the IpcMessage body (field for field as in Astrid v0.5.1), the payload
// types and the headers that routing and deduplication need. Every part of
// the node publishes through a Publisher; consumers such as the idle
// monitor decode with Decode.
package events

import (
	"encoding/json"
	"time"
)

// Subjects. The subject of a message is its topic.
const (
	SubjectConnected  = "client.v1.connected"
	SubjectDisconnect = "client.v1.disconnect"
	SubjectLoaded     = "capsule.v1.loaded"
	SubjectUnloaded   = "capsule.v1.unloaded"
	SubjectHeartbeat  = "node.v1.heartbeat"
)

// Headers set on every event (HeaderStream only on client events).
const (
	HeaderMsgID    = "Nats-Msg-Id"
	HeaderNode     = "Astrid-Node"
	HeaderCapsule  = "Astrid-Capsule"
	HeaderInstance = "Astrid-Instance"
	HeaderStream   = "Astrid-Stream"
)

// Payload "type" values.
const (
	TypeConnect    = "connect"
	TypeDisconnect = "disconnect"
	TypeLoaded     = "capsule_loaded"
	TypeUnloaded   = "capsule_unloaded"
	TypeHeartbeat  = "heartbeat"
)

// Disconnect reasons: why a stream ended.
const (
	ReasonStreamClosed    = "stream_closed"    // the capsule closed it
	ReasonPeerClosed      = "peer_closed"      // the client hung up
	ReasonFrameTooLarge   = "frame_too_large"  // the client sent an oversize frame
	ReasonWriteTimeout    = "write_timeout"    // the client stopped reading
	ReasonIOError         = "io_error"         // any other socket failure
	ReasonCapsuleUnloaded = "capsule_unloaded" // the instance was unloaded
	ReasonCapsuleCrashed  = "capsule_crashed"  // the instance trapped or exited
	ReasonNodeShutdown    = "node_shutdown"    // the node is shutting down
)

// Load reasons.
const (
	LoadStart      = "start"
	LoadActivation = "activation"
	LoadRequest    = "request"
)

// Unload reasons.
const (
	UnloadIdle     = "idle"
	UnloadShutdown = "shutdown"
	UnloadRequest  = "request"
	UnloadCrash    = "crash"
)

// Message is the wire body of every event: Astrid v0.5.1's IpcMessage.
// Signature is always null; it is kept for wire compatibility.
type Message struct {
	Topic     string          `json:"topic"`
	Payload   json.RawMessage `json:"payload"`
	Signature *string         `json:"signature"`
	SourceID  string          `json:"source_id"`
	Timestamp string          `json:"timestamp"`
	Seq       uint64          `json:"seq"`
}

// Payload is one of Connect, Disconnect, Loaded, Unloaded, Heartbeat or
// Unknown.
type Payload interface {
	PayloadType() string
}

// Connect is the payload of client.v1.connected.
type Connect struct{}

// Disconnect is the payload of client.v1.disconnect.
type Disconnect struct {
	Reason string `json:"reason"`
}

// Loaded is the payload of capsule.v1.loaded.
type Loaded struct {
	Capsule  string `json:"capsule"`
	Instance string `json:"instance"`
	Node     string `json:"node"`
	Reason   string `json:"reason"`
	// IdleTimeoutMS is the capsule's idle timeout in milliseconds as the
	// node resolved it (manifest, else the node default); 0 means never.
	IdleTimeoutMS int64 `json:"idle_timeout_ms"`
}

// Unloaded is the payload of capsule.v1.unloaded.
type Unloaded struct {
	Capsule       string `json:"capsule"`
	Instance      string `json:"instance"`
	Node          string `json:"node"`
	Reason        string `json:"reason"`
	StreamsClosed int    `json:"streams_closed"`
}

// Heartbeat is the payload of node.v1.heartbeat. Instances holds the
// node's authoritative count of active streams for each loaded instance.
type Heartbeat struct {
	Node       string           `json:"node"`
	IntervalMS int64            `json:"interval_ms"`
	Instances  []InstanceStatus `json:"instances"`
}

// InstanceStatus is one loaded instance in a heartbeat.
type InstanceStatus struct {
	Capsule  string `json:"capsule"`
	Instance string `json:"instance"`
	Streams  int    `json:"streams"`
	// IdleTimeoutMS is the capsule's idle timeout in milliseconds as the
	// node resolved it (manifest, else the node default); 0 means never.
	IdleTimeoutMS int64 `json:"idle_timeout_ms"`
}

// Unknown is a payload whose type this version does not know. Consumers
// skip it; it never fails them.
type Unknown struct {
	Type string
	Raw  json.RawMessage
}

func (Connect) PayloadType() string    { return TypeConnect }
func (Disconnect) PayloadType() string { return TypeDisconnect }
func (Loaded) PayloadType() string     { return TypeLoaded }
func (Unloaded) PayloadType() string   { return TypeUnloaded }
func (Heartbeat) PayloadType() string  { return TypeHeartbeat }
func (u Unknown) PayloadType() string  { return u.Type }

// Event is a decoded event: the message body plus its headers.
type Event struct {
	Topic     string
	Payload   Payload
	SourceID  string
	Timestamp time.Time
	Seq       uint64

	MsgID    string
	Node     string
	Capsule  string
	Instance string
	Stream   string
}
