package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/socketgw"
)

// connectNode is a real gateway in a fresh home with one capsule "echo"
// whose instance is a Go goroutine: it echoes each frame, or only
// accepts and stays silent.
func connectNode(t *testing.T, echo bool) (home string) {
	t.Helper()
	home, err := os.MkdirTemp("", "cn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	gw, err := socketgw.New(socketgw.Config{RunDir: filepath.Join(home, "run"),
		ServerVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Bind("echo", "echo"); err != nil {
		t.Fatal(err)
	}
	s := gw.Attach("echo", "inst")
	l, err := s.Bind("echo")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		out := make([]abi.Ready, 8)
		buf := make([]byte, 1<<20)
		for {
			n, err := s.Wait(ctx, -1, out)
			if err != nil {
				return
			}
			for _, r := range out[:n] {
				switch r.Kind {
				case abi.ReadyAccept:
					s.PollAccept(l)
				case abi.ReadyFrame:
					k, err := s.Read(r.Handle, buf)
					if err == nil && echo {
						s.Write(ctx, r.Handle, buf[:k])
					}
				case abi.ReadyClosed:
					s.CloseStream(r.Handle)
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close(events.ReasonCapsuleUnloaded)
		gw.Close()
	})
	return home
}

func runConnectCmd(args []string, stdin string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = connect(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestConnectEcho(t *testing.T) {
	home := connectNode(t, true)
	in := "hello\n\nworld with spaces\nlast line without newline"
	want := "hello\n\nworld with spaces\nlast line without newline\n"

	for _, args := range [][]string{
		{"--home", home, "echo"},
		{"--timeout", "2s", filepath.Join(home, "run", "echo.sock")},
	} {
		code, out, errs := runConnectCmd(args, in)
		if code != 0 || out != want {
			t.Errorf("connect %v: got exit %d, stdout %q, stderr %q; want 0, %q",
				args, code, out, errs, want)
		}
	}

	t.Setenv("ASTRID_HOME", home)
	if code, out, errs := runConnectCmd([]string{"echo"}, "via env\n"); code != 0 ||
		out != "via env\n" {
		t.Errorf("connect with ASTRID_HOME: got %d, %q, %q", code, out, errs)
	}
}

func TestConnectErrors(t *testing.T) {
	home := connectNode(t, false)

	// A node of another protocol version cannot run here: a listener
	// that answers as one does.
	mismatchSock := filepath.Join(home, "old.sock")
	ln, err := net.Listen("unix", mismatchSock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reason := socketgw.VersionMismatch(1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			socketgw.ReadFrame(c, socketgw.MaxHandshake)
			b, _ := json.Marshal(socketgw.HandshakeResponse{Status: "error",
				ProtocolVersion: 2, Reason: reason})
			socketgw.WriteFrame(c, b)
			c.Close()
		}
	}()

	// A home whose token file holds another token.
	wrongHome := t.TempDir()
	os.Mkdir(filepath.Join(wrongHome, "run"), 0o700)
	os.WriteFile(filepath.Join(wrongHome, "run", "system.token"),
		[]byte(strings.Repeat("0", 64)), 0o600)

	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantErr  string
	}{
		{"no args", nil, "", 2, "usage"},
		{"bad flag", []string{"--nope", "echo"}, "", 2, "usage"},
		{"bad name", []string{"--home", home, "Bad Name"}, "", 2, "invalid socket name"},
		{"no socket", []string{"--home", home, "missing"}, "", exitNoSocket, "no socket"},
		{"empty stdin", []string{"--home", home, filepath.Join(home, "run", "echo.sock")},
			"", 0, ""},
		{"auth failed", []string{"--home", wrongHome,
			filepath.Join(home, "run", "echo.sock")}, "x\n", exitAuthFailed,
			"authentication failed"},
		{"version mismatch", []string{"--home", home, mismatchSock}, "x\n",
			exitVersionMismatch, "astrid daemon restart"},
		{"no reply", []string{"--home", home, "--timeout", "200ms", "echo"}, "x\ny\n", 1,
			"timed out waiting for replies: got 0 of 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runConnectCmd(tt.args, tt.stdin)
			if code != tt.wantCode || !strings.Contains(errs, tt.wantErr) {
				t.Errorf("got exit %d, stderr %q; want %d and %q",
					code, errs, tt.wantCode, tt.wantErr)
			}
			if tt.wantCode != 0 && tt.wantCode != 2 && strings.Count(errs, "\n") != 1 {
				t.Errorf("stderr %q: want one line", errs)
			}
		})
	}
}
