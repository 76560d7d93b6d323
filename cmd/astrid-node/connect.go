package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/socketgw"
	"github.com/astrid-os/astrid-node/socketgw/client"
)

// Exit codes of connect besides 0, 1 (other) and 2 (usage).
const (
	exitNoSocket        = 3
	exitAuthFailed      = 4
	exitVersionMismatch = 5
)

const connectUsage = `usage: astrid-node connect [--home DIR] [--timeout 5s] <socket name or path>

Opens a stream to a capsule's socket. A name means $home/run/<name>.sock;
a path is used as is, with the token of --home or ASTRID_HOME if set, else
the system.token next to the socket. Each stdin line (without its newline)
is sent as one frame, each frame received is printed with a newline. At
stdin EOF it waits until as many frames came back as it sent, at most
--timeout after the last one arrived, then exits.

Exit codes: 0 done, 1 other error, 2 usage, 3 no socket, 4 authentication
failed, 5 protocol version mismatch.
`

func cmdConnect(args []string, stdout, stderr io.Writer) int {
	return connect(args, os.Stdin, stdout, stderr)
}

// connect is cmdConnect with stdin as a parameter, for the tests.
func connect(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, connectUsage) }
	home := fs.String("home", "", "node home (default $ASTRID_HOME, else ~/.astrid)")
	timeout := fs.Duration("timeout", 5*time.Second,
		"bound on the handshake and on the wait for replies after stdin ends")
	if err := fs.Parse(args); err != nil {
		return exitUsage(err)
	}
	if fs.NArg() != 1 || *timeout <= 0 {
		fs.Usage()
		return 2
	}

	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "astrid-node connect: "+format+"\n", a...)
		return code
	}
	// A name lives in the home's run dir. A path brings its own run dir
	// (the token sits next to the socket) unless a home was given.
	sock := fs.Arg(0)
	isPath := strings.ContainsRune(sock, '/') || strings.HasSuffix(sock, ".sock")
	var runDir string
	if isPath && *home == "" && os.Getenv("ASTRID_HOME") == "" {
		runDir = filepath.Dir(sock)
	} else {
		dir, err := connectHome(*home)
		if err != nil {
			return fail(2, "%v", err)
		}
		runDir = filepath.Join(dir, "run")
	}
	if !isPath {
		if !socketgw.ValidName(sock) {
			return fail(2, "invalid socket name %q", sock)
		}
		sock = socketgw.SocketPath(runDir, sock)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	conn, err := client.Dial(ctx, sock, filepath.Join(runDir, socketgw.TokenFile))
	cancel()
	var rej *client.RejectedError
	switch {
	case errors.Is(err, client.ErrNoSocket):
		return fail(exitNoSocket, "no socket at %s (is the node running?)", sock)
	case errors.Is(err, client.ErrAuthFailed):
		return fail(exitAuthFailed, "authentication failed: the token in %s was refused",
			filepath.Join(runDir, socketgw.TokenFile))
	case errors.Is(err, client.ErrVersionMismatch) && errors.As(err, &rej):
		return fail(exitVersionMismatch, "%s", rej.Reason)
	case err != nil:
		return fail(1, "%v", err)
	}
	defer conn.Close()

	return pump(conn, stdin, stdout, *timeout, fail)
}

// connectHome resolves the node home: the flag, ASTRID_HOME, ~/.astrid.
func connectHome(flagHome string) (string, error) {
	if flagHome != "" {
		return flagHome, nil
	}
	if h := os.Getenv("ASTRID_HOME"); h != "" {
		return h, nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("no home directory: set --home or ASTRID_HOME")
	}
	return filepath.Join(h, ".astrid"), nil
}

// pump sends stdin lines as frames and prints frames as they arrive. It
// cannot half-close: the node ends a stream when the client's side ends,
// so after stdin EOF it waits for one reply per frame sent instead.
func pump(conn *client.Conn, stdin io.Reader, stdout io.Writer, timeout time.Duration,
	fail func(int, string, ...any) int) int {
	var got atomic.Int64 // frames received and printed
	arrived := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	go func() {
		out := bufio.NewWriter(stdout)
		for {
			p, err := conn.ReadFrame()
			if err != nil {
				readErr <- err
				return
			}
			out.Write(p)
			out.WriteByte('\n')
			out.Flush()
			got.Add(1)
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
	}()

	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), abi.MaxFrame)
	sent := 0
	for sc.Scan() {
		if err := conn.WriteFrame(sc.Bytes()); err != nil {
			conn.Close()
			<-readErr
			return fail(1, "sending frame %d: %v", sent+1, err)
		}
		sent++
	}
	if err := sc.Err(); err != nil {
		conn.Close()
		<-readErr
		return fail(1, "reading stdin: %v", err)
	}

	// Every reply resets the clock: --timeout bounds the silence.
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		if got.Load() >= int64(sent) {
			conn.Close()
			<-readErr
			return 0
		}
		select {
		case <-arrived:
			timer.Reset(timeout)
		case err := <-readErr:
			if got.Load() >= int64(sent) {
				return 0
			}
			if errors.Is(err, io.EOF) {
				return fail(1, "the node closed the stream after %d of %d replies",
					got.Load(), sent)
			}
			return fail(1, "reading frames: %v", err)
		case <-timer.C:
			conn.Close()
			<-readErr
			return fail(1, "timed out waiting for replies: got %d of %d", got.Load(), sent)
		}
	}
}
