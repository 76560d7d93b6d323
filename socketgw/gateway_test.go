package socketgw_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/astrid-os/astrid-node/socketgw"
)

func TestRunDirAndTokenFile(t *testing.T) {
	e := newEnv(t, nil)
	run := filepath.Join(e.dir, "run")

	fi, err := os.Lstat(run)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("run dir mode: got %v; want 0700", got)
	}
	fi, err = os.Lstat(e.gw.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("token file mode: got %v; want 0600", got)
	}
	raw, err := os.ReadFile(e.gw.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).Match(raw) {
		t.Errorf("token file: got %q; want 64 lowercase hex digits, no newline", raw)
	}
	if string(raw) != tokenHex(e.gw) {
		t.Errorf("token file does not hold the gateway's token")
	}

	path := e.bind(t, "echo", "echo")
	fi, err = os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("socket mode: got %v; want 0600", got)
	}

	if err := e.gw.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, p := range []string{path, e.gw.TokenPath()} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s after Close: got %v; want it removed", p, err)
		}
	}
}

func TestRunDirIsTightened(t *testing.T) {
	dir := shortDir(t)
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	gw, err := socketgw.New(socketgw.Config{RunDir: run})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	fi, _ := os.Lstat(run)
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("run dir mode: got %v; want 0700", got)
	}

	link := filepath.Join(dir, "link")
	if err := os.Symlink(run, link); err != nil {
		t.Fatal(err)
	}
	if _, err := socketgw.New(socketgw.Config{RunDir: link}); err == nil ||
		!strings.Contains(err.Error(), "symlink") {
		t.Errorf("New on a symlinked run dir: got %v; want a symlink error", err)
	}
}

func TestTokenRedacted(t *testing.T) {
	e := newEnv(t, nil)
	tok := socketgw.TokenOf(e.gw)
	var sb strings.Builder
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("t", "token", tok)
	for _, s := range []string{
		fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s %x %q", tok, tok, tok, tok, tok, tok),
		sb.String(),
	} {
		if strings.Contains(s, tok.Hex()) || strings.Contains(s, tok.Hex()[:16]) {
			t.Errorf("token printed in %q", s)
		}
		if !strings.Contains(s, "redacted") {
			t.Errorf("got %q; want it to say redacted", s)
		}
	}
}

func TestBindChecks(t *testing.T) {
	e := newEnv(t, nil)
	run := filepath.Join(e.dir, "run")

	// A socket file left by a dead node: bound and closed, file kept.
	stale := socketgw.SocketPath(run, "stale")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	// A live listener that is not ours.
	live := socketgw.SocketPath(run, "live")
	ln2, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()

	if err := os.Symlink("/etc/passwd", socketgw.SocketPath(run, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(socketgw.SocketPath(run, "plain"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.bind(t, "taken", "taken")

	long := strings.Repeat("a", 60)
	longDir := filepath.Join(e.dir, strings.Repeat("d", 50))
	gwLong, err := socketgw.New(socketgw.Config{RunDir: longDir})
	if err != nil {
		t.Fatal(err)
	}
	defer gwLong.Close()
	if err := gwLong.Bind("x", long); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Bind with a path over sun_path: got %v; want a clear limit error", err)
	}

	tests := []struct {
		name, capsule, socket string
		wantErr               string // "" binds
	}{
		{"stale socket is replaced", "a", "stale", ""},
		{"live listener refused", "a", "live", "in use"},
		{"symlink refused", "a", "link", "symlink"},
		{"plain file refused", "a", "plain", "not a socket"},
		{"already bound", "b", "taken", "already bound"},
		{"bad socket name", "a", "Bad", "invalid socket name"},
		{"bad capsule name", "1a", "ok", "invalid capsule name"},
		{"name too long", "a", strings.Repeat("n", 64), "invalid socket name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.gw.Bind(tt.capsule, tt.socket)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v; want an error containing %q", err, tt.wantErr)
			}
		})
	}

	// The replaced stale socket serves clients.
	s := e.gw.Attach("a", "inst-stale")
	startEcho(t, s, "stale")
	roundTrip(t, e.dial(t, stale), "hello")
}
