package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// MaxRequest bounds the body of a control request.
const MaxRequest = 4096

// flushTimeout bounds Serve's wait for the server to confirm the service's
// subscriptions.
const flushTimeout = 5 * time.Second

// Host is what the control service controls: the node's capsules. The node
// adapts its runtime to it.
type Host interface {
	List() []InstanceInfo
	Load(ctx context.Context, capsule string) Reply
	Unload(ctx context.Context, req UnloadRequest) Reply
	Stats() Stats
}

// Stats is the body of a stats reply.
type Stats struct {
	Node      string `json:"node"`
	Capsules  int    `json:"capsules"`
	Loaded    int    `json:"loaded"`
	Streams   int    `json:"streams"`
	UptimeSec int64  `json:"uptime_sec"`
}

var (
	capsuleName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	nodeID      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// ValidNodeID reports whether id can stand in a control subject: one NATS
// token of letters, digits, '-' and '_', at most 64 bytes.
func ValidNodeID(id string) error {
	if !nodeID.MatchString(id) {
		return fmt.Errorf("invalid node id %q: want 1-64 of [A-Za-z0-9_-]", id)
	}
	return nil
}

// Serve registers the control service of node on nc. Each endpoint's
// subject carries the node id, so a request reaches exactly this node.
// Stop the returned service to withdraw it.
func Serve(nc *nats.Conn, node, version string, h Host, log *slog.Logger) (micro.Service, error) {
	if err := ValidNodeID(node); err != nil {
		return nil, err
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     version,
		Description: "astrid-node capsule control",
		Metadata:    map[string]string{"node": node},
	})
	if err != nil {
		return nil, fmt.Errorf("adding control service: %w", err)
	}

	// A queue group would be harmless (subjects are per node) but plain
	// subscriptions make the intent clear: one node, one responder.
	s := &service{node: node, host: h, log: log}
	endpoints := []struct {
		verb string
		fn   func(context.Context, []byte) (any, error)
	}{
		{VerbList, s.list},
		{VerbLoad, s.load},
		{VerbUnload, s.unload},
		{VerbStats, s.stats},
	}
	for _, e := range endpoints {
		fn := e.fn
		err := svc.AddEndpoint(e.verb, micro.HandlerFunc(func(r micro.Request) {
			s.handle(r, fn)
		}), micro.WithEndpointSubject(Subject(node, e.verb)),
			micro.WithEndpointQueueGroupDisabled())
		if err != nil {
			svc.Stop()
			return nil, fmt.Errorf("adding control endpoint %s: %w", e.verb, err)
		}
	}

	// Subscriptions reach the server asynchronously: without the flush a
	// request sent right after Serve (by ctl, after the node's ready line)
	// could find no responder.
	if err := nc.FlushTimeout(flushTimeout); err != nil {
		svc.Stop()
		return nil, fmt.Errorf("registering control service: %w", err)
	}
	return svc, nil
}

type service struct {
	node string
	host Host
	log  *slog.Logger
}

// requestError is a request the service refuses before reaching the host.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

func (s *service) handle(r micro.Request, fn func(context.Context, []byte) (any, error)) {
	data := r.Data()
	if len(data) > MaxRequest {
		s.fail(r, "400", fmt.Sprintf("request of %d bytes exceeds %d", len(data), MaxRequest))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := fn(ctx, data)
	if err != nil {
		s.fail(r, "400", err.Error())
		return
	}
	if rep, ok := out.(Reply); ok && !rep.OK {
		s.fail(r, "409", rep.Error, rep)
		return
	}
	if err := r.RespondJSON(out); err != nil {
		s.log.Warn("control reply failed", "subject", r.Subject(), "err", err)
	}
}

// fail replies with a micro error (headers) whose body is a Reply, so both
// `nats micro` users and our own clients see the reason.
func (s *service) fail(r micro.Request, code, msg string, rep ...Reply) {
	body := Reply{OK: false, Error: msg, Node: s.node}
	if len(rep) > 0 {
		body = rep[0]
		body.Node = s.node
	}
	data, _ := json.Marshal(body)
	s.log.Info("control request refused", "subject", r.Subject(), "reason", msg)
	if err := r.Error(code, msg, data); err != nil {
		s.log.Warn("control reply failed", "subject", r.Subject(), "err", err)
	}
}

func decodeStrict(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &requestError{"empty request body; want a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &requestError{"invalid request: " + err.Error()}
	}
	if dec.More() {
		return &requestError{"invalid request: trailing data"}
	}
	return nil
}

// ValidCapsuleName reports whether name can be a capsule's name: a lower
// case letter, then up to 62 of [a-z0-9-].
func ValidCapsuleName(name string) error {
	if !capsuleName.MatchString(name) {
		return fmt.Errorf("invalid capsule name %q: want [a-z][a-z0-9-]{0,62}", name)
	}
	return nil
}

func checkCapsule(name string) error {
	if err := ValidCapsuleName(name); err != nil {
		return &requestError{err.Error()}
	}
	return nil
}

func (s *service) list(context.Context, []byte) (any, error) {
	return Reply{OK: true, Node: s.node, List: s.host.List()}, nil
}

func (s *service) stats(context.Context, []byte) (any, error) {
	st := s.host.Stats()
	st.Node = s.node
	return st, nil
}

func (s *service) load(ctx context.Context, data []byte) (any, error) {
	var req LoadRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	if err := checkCapsule(req.Capsule); err != nil {
		return nil, err
	}
	rep := s.host.Load(ctx, req.Capsule)
	rep.Node = s.node
	return rep, nil
}

func (s *service) unload(ctx context.Context, data []byte) (any, error) {
	var req UnloadRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	if err := checkCapsule(req.Capsule); err != nil {
		return nil, err
	}
	if req.Instance != "" {
		if _, err := uuid.Parse(req.Instance); err != nil {
			return nil, &requestError{fmt.Sprintf("invalid instance id %q", req.Instance)}
		}
	}
	switch req.Reason {
	case "idle", "request":
	case "":
		req.Reason = "request"
	default:
		return nil, &requestError{fmt.Sprintf("invalid reason %q: want idle or request",
			req.Reason)}
	}
	rep := s.host.Unload(ctx, req)
	rep.Node = s.node
	return rep, nil
}

// ErrRefused wraps the error text of a reply with OK false.
var ErrRefused = errors.New("refused")

// Call sends a control request to node and decodes the reply. A reply with
// OK false is returned together with an error wrapping ErrRefused.
func Call(ctx context.Context, nc *nats.Conn, node, verb string, req any) (Reply, error) {
	var rep Reply
	data, err := callRaw(ctx, nc, node, verb, req)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		return rep, fmt.Errorf("decoding %s reply from node %s: %w", verb, node, err)
	}
	if !rep.OK {
		return rep, fmt.Errorf("%s on node %s: %w: %s", verb, node, ErrRefused, rep.Error)
	}
	return rep, nil
}

// CallStats asks node for its stats.
func CallStats(ctx context.Context, nc *nats.Conn, node string) (Stats, error) {
	var st Stats
	data, err := callRaw(ctx, nc, node, VerbStats, nil)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("decoding stats reply from node %s: %w", node, err)
	}
	return st, nil
}

func callRaw(ctx context.Context, nc *nats.Conn, node, verb string, req any) ([]byte, error) {
	if err := ValidNodeID(node); err != nil {
		return nil, err
	}
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return nil, err
		}
	}
	m, err := nc.RequestWithContext(ctx, Subject(node, verb), body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("no node %q is reachable: %w", node, err)
		}
		return nil, fmt.Errorf("%s request to node %s: %w", verb, node, err)
	}
	return m.Data, nil
}

// Discover finds the nodes whose control services answer on nc within
// wait, through the micro service discovery subject. It returns their ids,
// sorted and without duplicates.
func Discover(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]string, error) {
	subj, err := micro.ControlSubject(micro.InfoVerb, ServiceName, "")
	if err != nil {
		return nil, err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subj, inbox, nil); err != nil {
		return nil, err
	}

	seen := map[string]bool{}
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			break
		}
		m, err := sub.NextMsg(left)
		if err != nil {
			break
		}
		var info micro.Info
		if json.Unmarshal(m.Data, &info) != nil {
			continue
		}
		if id := info.Metadata["node"]; ValidNodeID(id) == nil {
			seen[id] = true
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, ctx.Err()
}
