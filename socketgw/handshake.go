package socketgw

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// ProtocolVersion is the handshake protocol version this node speaks.
const ProtocolVersion = 1

// MaxHandshake bounds the size of a handshake request frame.
const MaxHandshake = 4096

// Handshake reply texts. They are part of the wire contract: clients of
// Astrid v0.5.1 show them to the user.
const (
	StatusOK   = "ok"
	StatusErr  = "error"
	AuthFailed = "authentication failed"
)

// HandshakeRequest is the first frame a client sends. Unknown fields are
// ignored, so a newer client can add optional fields without breaking.
type HandshakeRequest struct {
	Token           string `json:"token"`
	ProtocolVersion int64  `json:"protocol_version"`
	ClientVersion   string `json:"client_version"`
}

// HandshakeResponse is the node's only handshake frame.
type HandshakeResponse struct {
	Status          string `json:"status"`
	ProtocolVersion int64  `json:"protocol_version"`
	ServerVersion   string `json:"server_version"`
	Reason          string `json:"reason,omitempty"`
}

// VersionMismatch is the reason sent to a client of another protocol
// version, word for word as Astrid v0.5.1 sends it.
func VersionMismatch(client int64) string {
	return fmt.Sprintf("Protocol version mismatch (client=%d, server=%d). "+
		"Restart the daemon with `astrid daemon restart`.", client, ProtocolVersion)
}

var errNotObject = errors.New("handshake request is not a JSON object")

// ParseHandshakeRequest parses a handshake request frame. It accepts one
// JSON object and nothing else: null, arrays, trailing data, wrong field
// types or more than MaxHandshake bytes are errors. A missing
// protocol_version reads as 0 and so fails the version check.
func ParseHandshakeRequest(data []byte) (HandshakeRequest, error) {
	var req HandshakeRequest
	if len(data) > MaxHandshake {
		return req, fmt.Errorf("handshake request of %d bytes exceeds %d", len(data), MaxHandshake)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return req, errNotObject
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return HandshakeRequest{}, fmt.Errorf("handshake request: %w", err)
	}
	return req, nil
}

// errDrop marks a handshake that ends without a reply.
var errDrop = errors.New("dropped without reply")

// handshake runs the server side of the handshake on conn. It returns a
// nil error for an authenticated client; otherwise an error for the log
// (never holding the token) that wraps errDrop if no reply was sent.
func (g *Gateway) handshake(conn net.Conn) (clientVersion string, early []byte, err error) {
	timeout := g.cfg.HandshakeTimeout

	conn.SetReadDeadline(time.Now().Add(timeout))
	body, early, err := readRequest(conn)
	if err != nil {
		return "", nil, fmt.Errorf("%w: reading request: %v", errDrop, err)
	}
	req, err := ParseHandshakeRequest(body)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", errDrop, err)
	}
	clientVersion = req.ClientVersion

	// The version comes first so an old client learns to restart the
	// daemon rather than to distrust its token.
	resp := HandshakeResponse{
		Status:          StatusOK,
		ProtocolVersion: ProtocolVersion,
		ServerVersion:   g.cfg.ServerVersion,
	}
	switch {
	case req.ProtocolVersion != ProtocolVersion:
		resp.Status, resp.Reason = StatusErr, VersionMismatch(req.ProtocolVersion)
		err = fmt.Errorf("protocol version %d", req.ProtocolVersion)
	case !g.token.matches(req.Token):
		resp.Status, resp.Reason = StatusErr, AuthFailed
		err = errors.New("wrong or malformed token")
	}

	out, merr := json.Marshal(resp)
	if merr != nil {
		panic("BUG: handshake response does not marshal: " + merr.Error())
	}
	conn.SetWriteDeadline(time.Now().Add(timeout))
	if werr := WriteFrame(conn, out); werr != nil && err == nil {
		err = fmt.Errorf("writing reply: %w", werr)
	}
	if err != nil {
		return clientVersion, nil, err
	}
	// No deadline needs clearing: the stream is read raw, and every frame
	// write sets its own.
	return clientVersion, early, nil
}

// readRequest reads the request frame, usually in one read. A client may
// send its first frames right behind the request; those bytes come back
// as early, for the stream to parse first.
func readRequest(conn net.Conn) (body, early []byte, err error) {
	buf := make([]byte, HeaderSize+MaxHandshake)
	have, want := 0, -1
	for want < 0 || have < want {
		n, err := conn.Read(buf[have:])
		have += n
		if want < 0 && have >= HeaderSize {
			size := binary.BigEndian.Uint32(buf)
			if size > MaxHandshake {
				return nil, nil, fmt.Errorf("%w: declared %d bytes, limit %d",
					ErrFrameTooLarge, size, MaxHandshake)
			}
			want = HeaderSize + int(size)
		}
		if want >= 0 && have >= want {
			break
		}
		if err != nil {
			return nil, nil, unexpected(err)
		}
		if have == len(buf) {
			panic("BUG: handshake buffer full before the request")
		}
	}
	if have > want {
		early = bytes.Clone(buf[want:have])
	}
	return buf[HeaderSize:want], early, nil
}
