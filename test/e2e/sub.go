package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// probeType is the payload type of the harness's probe messages. It is
// unknown to every consumer, which skips it (events.Unknown).
const probeType = "e2e_probe"

// Sub is a `nats sub` process running in the background.
type Sub struct {
	t       testing.TB
	cmd     *exec.Cmd
	out     *Buffer
	errOut  *Buffer
	subject string
	done    chan struct{}
}

// StartSub starts `nats sub SUBJECT...` against the node and returns once
// the subscription is live: for each subject it publishes probe messages
// on a subject the pattern matches until the CLI prints one. Probes are
// left out of Msgs. Use it for events a test is about to cause.
func (n *Node) StartSub(subjects ...string) *Sub {
	n.t.Helper()
	s := &Sub{t: n.t, out: &Buffer{}, errOut: &Buffer{}, subject: strings.Join(subjects, " "),
		done: make(chan struct{})}
	args := append(append([]string{"sub"}, subjects...), "--server", n.URL)
	s.cmd = exec.Command(NatsCLI(n.t), args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.errOut
	s.cmd.SysProcAttr = ChildAttr()
	if err := s.cmd.Start(); err != nil {
		n.t.Fatalf("starting nats sub: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	n.t.Cleanup(s.Stop)

	nc, err := nats.Connect(n.URL)
	if err != nil {
		n.t.Fatalf("probe connection: %v", err)
	}
	defer nc.Close()
	for _, subject := range subjects {
		ps := probeSubject(subject)
		probe := probeBody(ps)
		WaitFor(n.t, "nats sub to subscribe to "+subject, natsTimeout, func() bool {
			if s.exited() {
				n.t.Fatalf("nats sub exited: %s", s.errOut)
			}
			nc.Publish(ps, probe)
			nc.Flush()
			return strings.Contains(s.out.String(), `Received on "`+ps+`"`)
		})
	}
	return s
}

// probeSubject is a literal subject that pattern matches.
func probeSubject(pattern string) string {
	tokens := strings.Split(pattern, ".")
	for i, tok := range tokens {
		if tok == "*" || tok == ">" {
			tokens[i] = "e2eprobe"
		}
	}
	return strings.Join(tokens, ".")
}

// probeBody is a well-formed IpcMessage whose payload type nobody knows.
func probeBody(subject string) []byte {
	nonce := make([]byte, 8)
	rand.Read(nonce)
	body, _ := json.Marshal(map[string]any{
		"topic":     subject,
		"payload":   map[string]any{"type": probeType, "nonce": hex.EncodeToString(nonce)},
		"signature": nil,
		"source_id": "e2e",
		"timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"seq":       1,
	})
	return body
}

// Msgs returns the messages printed so far, without probes. A last
// message the CLI is still printing (its body not yet whole JSON) is left
// for a later call.
func (s *Sub) Msgs() []Msg {
	var msgs []Msg
	all := ParseSub(s.out.String())
	if n := len(all); n > 0 && !json.Valid(bytes.TrimSpace(all[n-1].Body)) {
		all = all[:n-1]
	}
	for _, m := range all {
		if !strings.Contains(string(m.Body), `"type":"`+probeType+`"`) {
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// Wait waits until at least count messages (probes aside) arrived and
// returns them; it fails the test after timeout.
func (s *Sub) Wait(count int, timeout time.Duration) []Msg {
	s.t.Helper()
	var msgs []Msg
	deadline := time.Now().Add(timeout)
	for {
		msgs = s.Msgs()
		if len(msgs) >= count {
			return msgs
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats sub %s: %d messages after %v; want %d:\n%s", s.subject,
				len(msgs), timeout, count, s.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop ends the nats sub process.
func (s *Sub) Stop() {
	if s.exited() {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *Sub) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
