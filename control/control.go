// Package control is the request/reply contract of a node's control
// service: the subjects and the JSON bodies. Each node runs a nats.go micro
// service named ServiceName whose endpoints live under the node's own
// subject prefix, so a request reaches exactly one node.
package control

// ServiceName is the micro service name every node registers.
const ServiceName = "astrid-node"

// Endpoint names.
const (
	VerbList   = "list"
	VerbLoad   = "load"
	VerbUnload = "unload"
	VerbStats  = "stats"
)

// Subject returns the control subject of verb on node:
// "astrid.node.<node>.<verb>".
func Subject(node, verb string) string {
	return "astrid.node." + node + "." + verb
}

// UnloadRequest asks a node to unload an instance (or, with Instance
// empty, the capsule's current instance). With IfIdle the node refuses if
// the instance still has open streams: it is the authority on that.
type UnloadRequest struct {
	Capsule  string `json:"capsule"`
	Instance string `json:"instance,omitempty"`
	Reason   string `json:"reason"` // events.UnloadIdle or events.UnloadRequest
	IfIdle   bool   `json:"if_idle,omitempty"`
}

// LoadRequest asks a node to load a capsule it knows.
type LoadRequest struct {
	Capsule string `json:"capsule"`
}

// Reply is the body of every control reply. Error is set on failure and
// then OK is false. Streams carries the node's count of open streams where
// the request concerned one instance (so a refused idle unload tells the
// monitor the truth).
type Reply struct {
	OK       bool           `json:"ok"`
	Error    string         `json:"error,omitempty"`
	Node     string         `json:"node"`
	Instance string         `json:"instance,omitempty"`
	Streams  int            `json:"streams"`
	List     []InstanceInfo `json:"list,omitempty"`
}

// InstanceInfo describes one capsule on a node and, if loaded, its
// instance.
type InstanceInfo struct {
	Capsule  string `json:"capsule"`
	Instance string `json:"instance,omitempty"` // empty when unloaded
	Loaded   bool   `json:"loaded"`
	Streams  int    `json:"streams"`
	Socket   string `json:"socket,omitempty"`
	Since    string `json:"since,omitempty"` // RFC 3339 load time
}
