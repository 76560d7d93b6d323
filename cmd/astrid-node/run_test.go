package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/node"
)

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestRunUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--frob"}, "flag provided but not defined: -frob"},
		{"extra argument", []string{"now"}, `unexpected argument "now"`},
		{"bad duration", []string{"--heartbeat", "soon"}, "invalid value"},
		{"zero heartbeat", []string{"--heartbeat", "0s"}, "--heartbeat 0s"},
		{"negative grace", []string{"--grace", "-1s"}, "--grace -1s"},
		{"bad log level", []string{"--log-level", "loud"}, `--log-level "loud"`},
		{"bad log format", []string{"--log-format", "xml"}, `--log-format "xml"`},
		{"no streams", []string{"--max-streams", "0"}, "--max-streams 0"},
		{"cluster without listener", []string{"--nats-listen", "none",
			"--cluster-listen", "127.0.0.1:0"}, "needs a client listener"},
		{"routes without cluster", []string{"--routes", "nats://127.0.0.1:6222"},
			"routes need a cluster listen address"},
		{"bad listen address", []string{"--nats-listen", "4222"}, "NATS listen address"},
		{"bad node id", []string{"--node-id", "a b"}, "node id"},
		{"cluster with url", []string{"--nats-url", "nats://127.0.0.1:1",
			"--cluster-listen", "127.0.0.1:0"}, "embedded server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--home", t.TempDir()}, tc.args...)
			var out, errOut bytes.Buffer
			code := cmdRun(args, &out, &errOut)
			if code != 2 {
				t.Errorf("exit %d; want 2", code)
			}
			got := errOut.String()
			if strings.Count(got, "\n") != 1 || !strings.Contains(got, tc.want) {
				t.Errorf("stderr %q; want one line containing %q", got, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q; want nothing", out.String())
			}
		})
	}
}

func TestRunRuntimeErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	closed := freeAddr(t)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"port in use", []string{"--nats-listen", busy.Addr().String()}, "another process"},
		{"unreachable nats url", []string{"--nats-url", "nats://" + closed,
			"--nats-connect-wait", "200ms"}, "cannot reach NATS at nats://" + closed},
		{"home is a file", []string{"--home", file}, "home " + file},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--home", t.TempDir(), "--log-level", "error"}, tc.args...)
			var out, errOut bytes.Buffer
			start := time.Now()
			code := cmdRun(args, &out, &errOut)
			if code != 1 {
				t.Errorf("exit %d; want 1", code)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v to fail; want a bounded wait", d)
			}
			last := lastLine(errOut.String())
			if !strings.HasPrefix(last, "astrid-node run: ") || !strings.Contains(last, tc.want) {
				t.Errorf("last stderr line %q; want 'astrid-node run: ...%s...'", last, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q; want no ready line", out.String())
			}
		})
	}
}

// TestRunHomeNotWritable runs the binary as an unprivileged user against a
// home it may not write (the tests run as root, which may write anywhere).
func TestRunHomeNotWritable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the node as another user")
	}
	bin := binary(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	home, err := os.MkdirTemp("", "astrid-ro-home-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(home)
	os.Chmod(home, 0o755)

	cmd := exec.Command(bin, "run", "--home", home, "--nats-listen", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("run: %v; want exit 1 (stderr %q)", err, errOut.String())
	}
	want := "astrid-node run: home " + home + " is not writable: permission denied"
	if got := lastLine(errOut.String()); got != want {
		t.Errorf("stderr %q; want %q", got, want)
	}
}

var readyLine = regexp.MustCompile(
	`^astrid-node ready: node=([0-9a-f-]{36}) nats=(nats://127\.0\.0\.1:\d+)$`)

// TestRunSignals starts the real binary, checks the ready line, the ready
// file and a heartbeat, then stops it with a signal: exit 0, files gone.
func TestRunSignals(t *testing.T) {
	bin := binary(t)
	cases := []struct {
		sig    syscall.Signal
		format string
	}{
		{syscall.SIGTERM, "text"},
		{syscall.SIGINT, "json"},
	}
	for _, tc := range cases {
		t.Run(tc.sig.String(), func(t *testing.T) {
			t.Parallel()
			home := t.TempDir()
			cmd := exec.Command(bin, "run", "--home", home, "--nats-listen", "127.0.0.1:0",
				"--heartbeat", "100ms", "--log-format", tc.format)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var errOut syncBuffer
			cmd.Stderr = &errOut
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()

			lines := make(chan string, 10)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			var line string
			select {
			case line = <-lines:
			case <-time.After(10 * time.Second):
				t.Fatalf("no ready line within 10s; stderr:\n%s", errOut.String())
			}
			m := readyLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("ready line %q; want %v", line, readyLine)
			}
			id, url := m[1], m[2]

			readyPath := filepath.Join(home, node.RunDirName, node.ReadyFile)
			var r node.Ready
			data, err := os.ReadFile(readyPath)
			if err != nil || json.Unmarshal(data, &r) != nil {
				t.Fatalf("ready file %q: %v", data, err)
			}
			if r.Node != id || r.NATSURL != url || r.PID != cmd.Process.Pid {
				t.Errorf("ready file %+v; want node %s url %s pid %d", r, id, url, cmd.Process.Pid)
			}
			heartbeatFrom(t, url, id)

			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("after %v: %v; want exit 0 (stderr %s)", tc.sig, err, errOut.String())
			}
			for l := range lines {
				t.Errorf("extra stdout line %q; want only the ready line", l)
			}
			if _, err := os.Stat(readyPath); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("ready file after exit: %v; want it removed", err)
			}
			if tc.format == "json" {
				for _, l := range strings.Split(strings.TrimSpace(errOut.String()), "\n") {
					if !json.Valid([]byte(l)) {
						t.Errorf("log line %q is not JSON", l)
					}
				}
			}
		})
	}
}

// heartbeatFrom waits for one heartbeat of node id on url.
func heartbeatFrom(t *testing.T, url, id string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(events.SubjectHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no heartbeat: %v", err)
	}
	ev, err := events.Decode(m)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Node != id {
		t.Errorf("heartbeat from %q; want %q", ev.Node, id)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRunHelpHidesPassword checks that a password from the environment
// never appears in the help text.
func TestRunHelpHidesPassword(t *testing.T) {
	t.Setenv("ASTRID_NATS_PASSWORD", "s3cret-pw")
	var out, errOut bytes.Buffer
	if code := cmdRun([]string{"-h"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d; want 0", code)
	}
	if strings.Contains(out.String()+errOut.String(), "s3cret-pw") {
		t.Error("help text shows the password from ASTRID_NATS_PASSWORD")
	}
}

// TestRunSignalDuringConnect stops a node that is still waiting for an
// unreachable --nats-url: it must not wait out the connect wait.
func TestRunSignalDuringConnect(t *testing.T) {
	bin := binary(t)
	cmd := exec.Command(bin, "run", "--home", t.TempDir(), "--nats-url", "nats://"+freeAddr(t),
		"--nats-connect-wait", "1m")
	var errOut syncBuffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errOut.String(), "connecting to NATS") {
		if time.Now().After(deadline) {
			t.Fatalf("node never started connecting; stderr:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)

	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("exit: %v; want 1 (the node never started)", err)
		}
		if last := lastLine(errOut.String()); !strings.Contains(last, "context canceled") {
			t.Errorf("last stderr line %q; want the cancelled connect", last)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("node still waiting for NATS 5s after SIGTERM")
	}
}

// syncBuffer is a bytes.Buffer a process and a test may share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunPasswordFromEnv: an exported ASTRID_NATS_PASSWORD is taken for
// --nats-user and ignored by an embedded node, which has no credentials.
func TestRunPasswordFromEnv(t *testing.T) {
	t.Setenv("ASTRID_NATS_PASSWORD", "s3cret")
	o, err := parseRunFlags([]string{"--home", t.TempDir()}, io.Discard)
	if err != nil || o.node.NATSPassword != "" {
		t.Fatalf("embedded: password %q, err %v; want none and no error",
			o.node.NATSPassword, err)
	}
	o, err = parseRunFlags([]string{"--home", t.TempDir(), "--nats-url", "nats://x:4222",
		"--nats-user", "u"}, io.Discard)
	if err != nil || o.node.NATSPassword != "s3cret" {
		t.Fatalf("with --nats-user: password %q, err %v; want the env's",
			o.node.NATSPassword, err)
	}
}
