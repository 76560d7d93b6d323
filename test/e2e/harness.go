// Package e2e drives the real astrid-node binary and the real nats CLI,
// the way a user would. Tests start a node with StartNode, watch events
// with the nats CLI (NatsSub) and stop the node with a signal.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/astrid-os/astrid-node/internal/poll"
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
)

// Timeouts generous enough for a loaded CI machine under -race.
const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
	natsTimeout  = 15 * time.Second
)

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

// Binary builds astrid-node once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "astrid-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "astrid-node")
		cmd := exec.Command("go", "build", "-o", binPath,
			"github.com/astrid-os/astrid-node/cmd/astrid-node")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building astrid-node: %v", buildErr)
	}
	return binPath
}

// Cleanup removes what Binary built; TestMain calls it after the tests.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// NatsCLI returns the path of the nats CLI: the project's bin/nats, else
// the one on PATH. Without one the test is skipped, except in CI (CI=true)
// where a missing CLI is a failure.
func NatsCLI(t testing.TB) string {
	t.Helper()
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, "bin", "nats")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	msg := "nats CLI not found in ./bin or PATH; run scripts/install-tools.sh (or make tools)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// moduleRoot finds the directory holding go.mod above the working
// directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

// Buffer is an io.Writer safe for a process and a test to share.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Node is a running astrid-node process.
type Node struct {
	t   testing.TB
	Cmd *exec.Cmd

	Home string // --home
	URL  string // NATS URL from the ready line
	ID   string // node id from the ready line

	Stdout *Buffer // everything after the ready line
	Stderr *Buffer // the logs

	done     chan struct{}
	exitCode int // valid once done is closed
}

var readyRE = regexp.MustCompile(`^astrid-node ready: node=(\S+) nats=(\S+)$`)

// StartNode runs `astrid-node run args...` and waits for its ready line.
// Without --home it gets a fresh temporary home; without --nats-listen or
// --nats-url it listens on a free loopback port. The node is killed when
// the test ends if it is still running.
func StartNode(t testing.TB, args ...string) *Node {
	t.Helper()
	n := &Node{t: t, Stdout: &Buffer{}, Stderr: &Buffer{}, done: make(chan struct{})}
	if v, ok := flagValue(args, "home"); ok {
		n.Home = v
	} else {
		n.Home = t.TempDir()
		args = append(args, "--home", n.Home)
	}
	_, listen := flagValue(args, "nats-listen")
	_, url := flagValue(args, "nats-url")
	if !listen && !url {
		args = append(args, "--nats-listen", "127.0.0.1:0")
	}

	n.Cmd = exec.Command(Binary(t), append([]string{"run"}, args...)...)
	n.Cmd.Stderr = n.Stderr
	// A test binary that dies without its cleanups (a panic, a killed
	// `go test`) takes its nodes with it instead of leaving them running.
	n.Cmd.SysProcAttr = ChildAttr()
	stdout, err := n.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Cmd.Start(); err != nil {
		t.Fatalf("starting astrid-node: %v", err)
	}
	go n.wait()
	t.Cleanup(n.kill)

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(n.Stdout, stdout)
	}()

	select {
	case line, ok := <-lines:
		m := readyRE.FindStringSubmatch(line)
		if !ok || m == nil {
			<-n.done
			t.Fatalf("astrid-node %v: no ready line (got %q, exit %d); stderr:\n%s",
				args, line, n.exitCode, n.Stderr)
		}
		n.ID, n.URL = m[1], m[2]
	case <-time.After(readyTimeout):
		t.Fatalf("astrid-node not ready within %v; stderr:\n%s", readyTimeout, n.Stderr)
	}
	return n
}

// flagValue finds --name VALUE or --name=VALUE (one or two dashes).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func (n *Node) wait() {
	err := n.Cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		n.exitCode = 0
	case errors.As(err, &ee):
		n.exitCode = ee.ExitCode()
	default:
		n.exitCode = -1
	}
	close(n.done)
}

// Signal sends sig to the node.
func (n *Node) Signal(sig os.Signal) {
	n.t.Helper()
	if err := n.Cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits for the node to exit and returns its exit code (-1 when a
// signal killed it); it fails the test after timeout.
func (n *Node) Wait(timeout time.Duration) int {
	n.t.Helper()
	select {
	case <-n.done:
		return n.exitCode
	case <-time.After(timeout):
		n.t.Fatalf("astrid-node did not exit within %v; stderr:\n%s", timeout, n.Stderr)
		return 0
	}
}

// Stop sends SIGTERM and returns the exit code.
func (n *Node) Stop() int {
	n.t.Helper()
	n.Signal(syscall.SIGTERM)
	return n.Wait(stopTimeout)
}

// Exited reports whether the node process has ended.
func (n *Node) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

func (n *Node) kill() {
	select {
	case <-n.done:
	default:
		n.Cmd.Process.Kill()
		<-n.done
	}
	if n.t.Failed() {
		n.t.Logf("astrid-node stderr:\n%s", n.Stderr)
	}
}

// RunDir is the node's run directory.
func (n *Node) RunDir() string { return filepath.Join(n.Home, "run") }

// Nats runs the nats CLI against the node's server and returns its
// standard output; stderr goes into the error.
func (n *Node) Nats(args ...string) (string, error) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), natsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, NatsCLI(n.t), append(args, "--server", n.URL)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("nats %s: %v: %s", strings.Join(args, " "), err,
			strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// Msg is one message as `nats sub` printed it.
type Msg struct {
	Subject string
	Header  map[string]string
	Body    []byte
}

// NatsSub runs `nats sub SUBJECT --count COUNT` and returns the messages
// it printed. It suits events that repeat (heartbeats) or that are already
// flowing; the subscription starts when the CLI connects.
func (n *Node) NatsSub(subject string, count int) []Msg {
	n.t.Helper()
	out, err := n.Nats("sub", subject, "--count", fmt.Sprint(count))
	if err != nil {
		n.t.Fatal(err)
	}
	msgs := ParseSub(out)
	if len(msgs) != count {
		n.t.Fatalf("nats sub printed %d messages; want %d:\n%s", len(msgs), count, out)
	}
	return msgs
}

var receivedRE = regexp.MustCompile(`^\[#\d+\] Received on "([^"]+)"`)

// ParseSub parses the default (non-raw) output of `nats sub`: for each
// message a `[#N] Received on "SUBJECT"` line, its headers as "Key: value"
// lines, a blank line, then the body.
func ParseSub(out string) []Msg {
	var msgs []Msg
	var block []string
	flush := func() {
		if len(block) == 0 {
			return
		}
		m := &msgs[len(msgs)-1]
		body := block
		if i := indexBlank(block); i > 0 && allHeaders(block[:i]) {
			for _, h := range block[:i] {
				k, v, _ := strings.Cut(h, ": ")
				m.Header[k] = v
			}
			body = block[i+1:]
		}
		m.Body = []byte(strings.TrimSpace(strings.Join(body, "\n")))
		block = nil
	}
	for _, line := range strings.Split(out, "\n") {
		if m := receivedRE.FindStringSubmatch(line); m != nil {
			flush()
			msgs = append(msgs, Msg{Subject: m[1], Header: map[string]string{}})
			block = []string{}
			continue
		}
		if len(msgs) > 0 {
			block = append(block, line)
		}
	}
	flush()
	return msgs
}

func indexBlank(lines []string) int {
	for i, l := range lines {
		if strings.TrimSpace(l) == "" {
			return i
		}
	}
	return -1
}

func allHeaders(lines []string) bool {
	for _, l := range lines {
		if k, _, ok := strings.Cut(l, ": "); !ok || strings.ContainsAny(k, " {\"") {
			return false
		}
	}
	return true
}

// FreePort returns a loopback TCP port that was free a moment ago, for
// listeners (such as --cluster-listen) whose address a test must know in
// advance.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond until it holds, failing the test after timeout.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	poll.Until(t, timeout, what, cond)
}

// Run runs the astrid-node binary with args and stdin and returns its
// stdout, stderr and exit code.
func Run(t testing.TB, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running astrid-node %s: %v", args[0], err)
	}
	return out.String(), errOut.String(), code
}
