package socketgw_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/astrid-os/astrid-node/socketgw"
	"github.com/astrid-os/astrid-node/socketgw/client"
)

// rawFrame frames p by hand, so a test can also send what a client never
// would.
func rawFrame(p []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

func request(token string, version int) []byte {
	b, _ := json.Marshal(map[string]any{
		"token": token, "protocol_version": version, "client_version": "test",
	})
	return b
}

// exchange sends raw bytes and returns the node's reply frame, or nil if
// it closed the connection without one.
func exchange(t *testing.T, path string, raw []byte) *socketgw.HandshakeResponse {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	body, err := socketgw.ReadFrame(conn, socketgw.MaxHandshake)
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	var resp socketgw.HandshakeResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("reply %q: %v", body, err)
	}
	return &resp
}

func TestHandshakeRejections(t *testing.T) {
	e := newEnv(t, nil)
	path := e.bind(t, "echo", "echo")
	good := tokenHex(e.gw)
	wrong := strings.Repeat("ab", 32)
	mismatch := "Protocol version mismatch (client=2, server=1). " +
		"Restart the daemon with `astrid daemon restart`."

	oversize := binary.BigEndian.AppendUint32(nil, socketgw.MaxHandshake+1)

	tests := []struct {
		name       string
		raw        []byte
		wantReason string // "" means dropped with no reply
	}{
		{"wrong token", rawFrame(request(wrong, 1)), "authentication failed"},
		{"bad hex", rawFrame(request("zz"+good[2:], 1)), "authentication failed"},
		{"short token", rawFrame(request(good[:10], 1)), "authentication failed"},
		{"missing token", rawFrame([]byte(`{"protocol_version":1}`)), "authentication failed"},
		{"wrong version", rawFrame(request(good, 2)), mismatch},
		{"version before token", rawFrame(request(wrong, 2)), mismatch},
		{"oversize length", oversize, ""},
		{"invalid json", rawFrame([]byte(`{"token":`)), ""},
		{"not an object", rawFrame([]byte(`null`)), ""},
		{"version is a string", rawFrame([]byte(`{"protocol_version":"1"}`)), ""},
		{"empty frame", rawFrame(nil), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := strings.Count(e.logs.String(), "security_event=true")
			resp := exchange(t, path, tt.raw)

			switch {
			case tt.wantReason == "" && resp != nil:
				t.Fatalf("got reply %+v; want the connection dropped", *resp)
			case tt.wantReason != "" && resp == nil:
				t.Fatalf("got no reply; want reason %q", tt.wantReason)
			case resp != nil:
				if resp.Status != "error" || resp.Reason != tt.wantReason ||
					resp.ProtocolVersion != 1 || resp.ServerVersion != "test-1" {
					t.Fatalf("got %+v; want status error, reason %q", *resp, tt.wantReason)
				}
			}
			eventually(t, 2*time.Second, "rejection logged as a security event", func() bool {
				return strings.Count(e.logs.String(), "security_event=true") > before
			})
		})
	}

	if got := e.gw.Waiting("echo"); got != 0 {
		t.Errorf("Waiting after rejections: got %d; want 0", got)
	}

	// The good token still works, and unknown fields are ignored.
	resp := exchange(t, path, rawFrame([]byte(
		`{"token":"`+good+`","protocol_version":1,"client_version":"x","future":[1]}`)))
	if resp == nil || resp.Status != "ok" || resp.Reason != "" {
		t.Fatalf("good handshake: got %+v; want status ok without reason", resp)
	}
}

func TestClientErrors(t *testing.T) {
	e := newEnv(t, nil)
	path := e.bind(t, "echo", "echo")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err := client.Dial(ctx, filepath.Join(e.dir, "run", "none.sock"), e.gw.TokenPath())
	if !errors.Is(err, client.ErrNoSocket) {
		t.Errorf("missing socket: got %v; want ErrNoSocket", err)
	}

	badTok := filepath.Join(e.dir, "bad.token")
	os.WriteFile(badTok, []byte(strings.Repeat("0", 64)), 0o600)
	_, err = client.Dial(ctx, path, badTok)
	var rej *client.RejectedError
	if !errors.Is(err, client.ErrAuthFailed) || !errors.As(err, &rej) ||
		rej.Reason != "authentication failed" {
		t.Errorf("wrong token: got %v; want ErrAuthFailed", err)
	}

	// A socket file with nobody behind it, as a dead node leaves it.
	stale := filepath.Join(e.dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := client.Dial(ctx, stale, e.gw.TokenPath()); !errors.Is(err, client.ErrNoSocket) {
		t.Errorf("stale socket: got %v; want ErrNoSocket", err)
	}

	// A listener that accepts and never answers: the ctx bounds Dial.
	mute := filepath.Join(e.dir, "mute.sock")
	ln2, err := net.Listen("unix", mute)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := client.Dial(short, mute, e.gw.TokenPath()); !errors.Is(err,
		context.DeadlineExceeded) {
		t.Errorf("silent server: got %v; want DeadlineExceeded", err)
	}

	// A server that hangs up without a reply is a protocol error.
	_, err = client.Dial(ctx, path, filepath.Join(e.dir, "no-such.token"))
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("missing token file: got %v; want a token error", err)
	}
	garbled := filepath.Join(e.dir, "garbled.token")
	os.WriteFile(garbled, []byte(strings.Repeat("x", 5000)), 0o600)
	if _, err := client.Dial(ctx, path, garbled); !errors.Is(err, client.ErrProtocol) {
		t.Errorf("oversize request dropped: got %v; want ErrProtocol", err)
	}

	c, err := client.Dial(ctx, path, e.gw.TokenPath())
	if err != nil {
		t.Fatalf("good dial: %v", err)
	}
	if c.ServerVersion != "test-1" {
		t.Errorf("server version: got %q; want test-1", c.ServerVersion)
	}
	c.Close()
}

// A client that connects and says nothing holds one handshake slot until
// the handshake timeout; everyone else is served meanwhile.
func TestSilentClientDoesNotStall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *socketgw.Config) { c.HandshakeTimeout = 3 * time.Second })
	path := e.bind(t, "echo", "echo")
	s := e.gw.Attach("echo", "inst-silent")
	startEcho(t, s, "echo")

	silent, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, path, e.gw.TokenPath())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := fmt.Sprintf("client %d", i)
			c.WriteFrame([]byte(msg))
			got, err := c.ReadFrame()
			if err != nil || string(got) != msg {
				errs <- fmt.Errorf("echo: got %q, %v; want %q", got, err, msg)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Generous: the point is that nobody waited for the silent client's
	// 3 s handshake timeout.
	if elapsed > 1500*time.Millisecond {
		t.Errorf("20 clients took %v next to a silent one; want well under 3s", elapsed)
	}

	// The silent client is dropped at its timeout, with no reply.
	silent.SetDeadline(time.Now().Add(5 * time.Second))
	n, err := silent.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("silent client: got %d bytes, %v; want EOF", n, err)
	}
}

const childEnv = "SOCKETGW_TEST_CONNECT_AS_CHILD"

// runChild is the wrong-uid client: it sends a handshake and reports
// whether any reply came back.
func runChild() int {
	conn, err := net.Dial("unix", os.Getenv(childEnv))
	if err != nil {
		fmt.Println("dial error:", err)
		return 1
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(rawFrame(request(strings.Repeat("00", 32), 1)))
	n, err := conn.Read(make([]byte, 64))
	fmt.Printf("read %d bytes: %v\n", n, err)
	return 0
}

func TestWrongUIDDropped(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as uid 65534")
	}
	e := newEnv(t, nil)

	// Test-only: let uid 65534 reach the socket so the SO_PEERCRED check
	// is what stops it, not the file modes.
	socketgw.SetSocketMode(e.gw, 0o777)
	path := e.bind(t, "echo", "echo")
	for _, d := range []string{e.dir, filepath.Join(e.dir, "run")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// The test binary's build dir is private; run a copy from e.dir.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(e.dir, "child.test")
	if err := os.WriteFile(child, bin, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(child, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	// Closing with the request unread makes the kernel send a reset
	// rather than EOF; either way not one byte of reply.
	if !strings.HasPrefix(string(out), "read 0 bytes: ") ||
		!(strings.Contains(string(out), "EOF") || strings.Contains(string(out), "reset")) {
		t.Errorf("child as uid 65534: got %q; want no reply", out)
	}
	eventually(t, 2*time.Second, "wrong uid logged", func() bool {
		logs := e.logs.String()
		return strings.Contains(logs, "wrong uid") &&
			strings.Contains(logs, "security_event=true") &&
			strings.Contains(logs, "peer_uid=65534") && strings.Contains(logs, "capsule=echo")
	})
	if got := e.gw.Waiting("echo"); got != 0 {
		t.Errorf("Waiting: got %d; want 0", got)
	}
}
