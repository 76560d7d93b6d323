package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
)

// idleBuffer is a bytes.Buffer the command's goroutines and the test
// share.
type idleBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *idleBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *idleBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func idleEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: still waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleCommand runs `astrid-node idle` in-process against a real
// nats-server, plays a node that loads an idle instance, and stops the
// command with a real SIGTERM.
func TestIdleCommand(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true,
		NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()

	var stdout, stderr idleBuffer
	done := make(chan int, 1)
	go func() {
		done <- cmdIdle([]string{"--nats-url", s.ClientURL(), "--log-format", "json",
			"--log-level", "debug", "--request-timeout", "500ms"}, &stdout, &stderr)
	}()
	idleEventually(t, "the monitor to run", func() bool {
		return strings.Contains(stderr.String(), "idle monitor running")
	})

	// The node: its events through a Publisher, its unload endpoint
	// answering as the control service does.
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pub := events.NewPublisher(nc, "node-t", slog.New(slog.DiscardHandler))
	requests := make(chan control.UnloadRequest, 8)
	sub, err := nc.Subscribe(control.Subject("node-t", control.VerbUnload), func(m *nats.Msg) {
		var req control.UnloadRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Errorf("undecodable unload request %q: %v", m.Data, err)
		}
		requests <- req
		data, _ := json.Marshal(control.Reply{OK: true, Node: "node-t", Instance: req.Instance})
		m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	inst := uuid.NewString()
	if err := pub.Loaded("echo", inst, events.LoadStart, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	status := []events.InstanceStatus{{Capsule: "echo", Instance: inst, IdleTimeoutMS: 200}}
	if err := pub.Heartbeat(time.Minute, status); err != nil {
		t.Fatal(err)
	}

	select {
	case req := <-requests:
		if req.Instance != inst || req.Capsule != "echo" || req.Reason != events.UnloadIdle ||
			!req.IfIdle {
			t.Errorf("request: got %+v; want an idle unload of echo %s", req, inst)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no unload request after 10s; stderr:\n%s", stderr.String())
	}
	idleEventually(t, "the unload to be logged", func() bool {
		return strings.Contains(stderr.String(), "idle instance unloaded")
	})

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code after SIGTERM: got %d; want 0; stderr:\n%s", code,
				stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("command still running 10s after SIGTERM")
	}

	// Every log line is JSON, as asked.
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
}

func TestIdleCommandErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // the one line it must contain
		stdout string
	}{
		{"help", []string{"-h"}, 0, "", "-idle-timeout"},
		{"unknown flag", []string{"--bogus"}, 2, "flag provided but not defined", ""},
		{"bad duration", []string{"--idle-timeout", "soon"}, 2, "invalid value", ""},
		{"zero timeout", []string{"--request-timeout", "0s"}, 2, "must be positive", ""},
		{"bad log format", []string{"--log-format", "xml"}, 2, "want text or json", ""},
		{"bad log level", []string{"--log-level", "loud"}, 2, "--log-level", ""},
		{"argument", []string{"now"}, 2, `unexpected argument "now"`, ""},
		{"creds and user", []string{"--nats-creds", "x.creds", "--nats-user", "u"}, 2,
			"exclude each other", ""},
		{"bad node", []string{"--nats-url", "nats://127.0.0.1:1", "--node", "a.b"}, 2,
			"invalid node id", ""},
		{"unreachable", []string{"--nats-url", "nats://bob:s3cret@127.0.0.1:1",
			"--connect-timeout", "1s"}, 1, "cannot reach NATS at nats://redacted@127.0.0.1:1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := runIdle(t.Context(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code: got %d; want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v; want a bounded wait", d)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr: got %q; want it to contain %q", stderr.String(), tt.stderr)
			}
			if n := strings.Count(stderr.String(), "\n"); tt.code != 0 && n != 1 {
				t.Errorf("stderr: got %d lines; want 1: %q", n, stderr.String())
			}
			if strings.Contains(stderr.String(), "s3cret") {
				t.Errorf("stderr shows the password: %q", stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout: got %q; want it to contain %q", stdout.String(), tt.stdout)
			}
		})
	}
}

// TestIdlePasswordFromEnv: the environment's password goes with a user
// named by flag and is ignored without one, so an anonymous monitor on a
// machine that exports it still starts.
func TestIdlePasswordFromEnv(t *testing.T) {
	t.Setenv("ASTRID_NATS_PASSWORD", "s3cret")
	o, err := parseIdleFlags(nil, io.Discard)
	if err != nil || o.auth.password != "" {
		t.Fatalf("anonymous: password %q, err %v; want none and no error", o.auth.password, err)
	}
	o, err = parseIdleFlags([]string{"--nats-user", "u"}, io.Discard)
	if err != nil || o.auth.password != "s3cret" {
		t.Fatalf("with --nats-user: password %q, err %v; want the env's", o.auth.password, err)
	}
}
