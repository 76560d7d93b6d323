// Package client is the client side of the socket gateway: it dials a
// capsule's socket, performs the session-token handshake and exchanges
// frames. The astrid-node connect command and the tests use it.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/socketgw"
)

// Errors of Dial. A rejection by the node is a *RejectedError that
// unwraps to ErrAuthFailed or ErrVersionMismatch.
var (
	ErrNoSocket        = errors.New("no node is listening on the socket")
	ErrAuthFailed      = errors.New("authentication failed")
	ErrVersionMismatch = errors.New("protocol version mismatch")
	ErrProtocol        = errors.New("protocol error")
)

// RejectedError is a handshake the node answered with status "error".
type RejectedError struct {
	Reason string // the node's reason, verbatim
	kind   error
}

func (e *RejectedError) Error() string { return "handshake rejected: " + e.Reason }
func (e *RejectedError) Unwrap() error { return e.kind }

// Version is sent as client_version unless WithClientVersion says else.
const Version = "astrid-node-client/1"

type options struct {
	clientVersion string
	maxFrame      int
}

// Option configures Dial.
type Option func(*options)

// WithClientVersion sets the client_version of the handshake.
func WithClientVersion(v string) Option { return func(o *options) { o.clientVersion = v } }

// WithMaxFrame bounds the frames ReadFrame accepts (default abi.MaxFrame).
func WithMaxFrame(n int) Option { return func(o *options) { o.maxFrame = n } }

// Conn is an authenticated stream to a capsule.
type Conn struct {
	conn     *net.UnixConn
	br       *bufio.Reader
	maxFrame int

	// ServerVersion is the node's server_version from the handshake.
	ServerVersion string

	wmu  sync.Mutex
	wbuf []byte // guarded by wmu
}

// Dial connects to socketPath and authenticates with the token in
// tokenPath, read afresh on each call since a node restart replaces it.
// ctx bounds the connect and the handshake.
func Dial(ctx context.Context, socketPath, tokenPath string, opts ...Option) (*Conn, error) {
	o := options{clientVersion: Version, maxFrame: abi.MaxFrame}
	for _, opt := range opts {
		opt(&o)
	}

	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: %s", ErrNoSocket, socketPath)
		}
		return nil, fmt.Errorf("connecting to %s: %w", socketPath, err)
	}
	conn := nc.(*net.UnixConn)
	c := &Conn{conn: conn, br: bufio.NewReaderSize(conn, 4096), maxFrame: o.maxFrame}
	if err := c.handshake(ctx, tokenPath, o.clientVersion); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) handshake(ctx context.Context, tokenPath, clientVersion string) error {
	raw, err := os.ReadFile(tokenPath)
	if err != nil {
		return fmt.Errorf("reading session token: %w", err)
	}
	req, err := json.Marshal(socketgw.HandshakeRequest{
		Token:           strings.TrimSpace(string(raw)),
		ProtocolVersion: socketgw.ProtocolVersion,
		ClientVersion:   clientVersion,
	})
	if err != nil {
		return fmt.Errorf("encoding handshake: %w", err)
	}

	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := socketgw.WriteFrame(c.conn, req); err != nil {
		if cerr := ctxErr(ctx, err); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: sending handshake: %v", ErrProtocol, err)
	}
	body, err := socketgw.ReadFrame(c.br, socketgw.MaxHandshake)
	if err != nil {
		if cerr := ctxErr(ctx, err); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: reading handshake reply: %v", ErrProtocol, err)
	}
	var resp socketgw.HandshakeResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("%w: handshake reply: %v", ErrProtocol, err)
	}

	switch {
	case resp.Status == socketgw.StatusOK:
	case resp.Status != socketgw.StatusErr:
		return fmt.Errorf("%w: handshake status %q", ErrProtocol, resp.Status)
	case strings.HasPrefix(resp.Reason, "Protocol version mismatch"):
		return &RejectedError{Reason: resp.Reason, kind: ErrVersionMismatch}
	case resp.Reason == socketgw.AuthFailed:
		return &RejectedError{Reason: resp.Reason, kind: ErrAuthFailed}
	default:
		return &RejectedError{Reason: resp.Reason, kind: ErrProtocol}
	}

	c.ServerVersion = resp.ServerVersion
	if !stop() {
		return fmt.Errorf("handshake: %w", ctx.Err())
	}
	c.conn.SetDeadline(time.Time{})
	return nil
}

// ctxErr reports an I/O error caused by ctx as ctx's error. The conn
// deadline is ctx's deadline, so it can fire a moment before ctx's own
// timer does.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("handshake: %w", ctx.Err())
	}
	if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("handshake: %w", context.DeadlineExceeded)
	}
	return nil
}

// WriteFrame sends p as one frame.
func (c *Conn) WriteFrame(p []byte) error {
	if len(p) > abi.MaxFrame {
		return fmt.Errorf("%w: %d bytes", socketgw.ErrFrameTooLarge, len(p))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(c.wbuf[:0], 0, 0, 0, 0)
	c.wbuf = append(c.wbuf, p...)
	putLen(c.wbuf, len(p))
	_, err := c.conn.Write(c.wbuf)
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = nil
	}
	return err
}

func putLen(b []byte, n int) {
	b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// ReadFrame reads the next frame. io.EOF means the node ended the stream.
// It is not safe to call from two goroutines at once.
func (c *Conn) ReadFrame() ([]byte, error) {
	return socketgw.ReadFrame(c.br, c.maxFrame)
}

// SetDeadline sets the read and write deadline of the connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// Close ends the stream.
func (c *Conn) Close() error { return c.conn.Close() }
