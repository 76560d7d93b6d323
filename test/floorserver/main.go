// Command floorserver is the benchmark floor: a plain Go Unix-socket server
// with the gateway's framing (u32 big-endian length, then the bytes) and,
// in handshake mode, the same handshake JSON and constant-time token
// compare, but no capsule, no NATS and no UID check. The benchmarks in
// test/ run it in its own process so that both sides pay the same
// cross-process wake-ups.
package main

import (
	"bufio"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

const maxFrame = 10 << 20

func main() {
	socket := flag.String("socket", "", "Unix socket path to listen on")
	tokenHex := flag.String("token", "", "64 hex characters; enables the handshake")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "floorserver: --socket is required")
		os.Exit(2)
	}
	var token []byte
	if *tokenHex != "" {
		var err error
		if token, err = hex.DecodeString(*tokenHex); err != nil || len(token) != 32 {
			fmt.Fprintln(os.Stderr, "floorserver: --token must be 64 hex characters")
			os.Exit(2)
		}
	}

	os.Remove(*socket)
	ln, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floorserver:", err)
		os.Exit(1)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		ln.Close()
	}()
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go serve(c, token)
	}
}

func serve(c net.Conn, token []byte) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	var buf []byte
	if token != nil && !handshake(c, r, token) {
		return
	}
	for {
		var err error
		if buf, err = readFrame(r, buf); err != nil {
			return
		}
		if writeFrame(c, buf) != nil {
			return
		}
	}
}

func handshake(c net.Conn, r *bufio.Reader, token []byte) bool {
	frame, err := readFrame(r, nil)
	if err != nil || len(frame) > 4096 {
		return false
	}
	var req struct {
		Token           string `json:"token"`
		ProtocolVersion int    `json:"protocol_version"`
		ClientVersion   string `json:"client_version"`
	}
	if json.Unmarshal(frame, &req) != nil {
		return false
	}
	got, err := hex.DecodeString(req.Token)
	ok := err == nil && len(got) == len(token) && subtle.ConstantTimeCompare(got, token) == 1
	resp := map[string]any{"status": "ok", "protocol_version": 1, "server_version": "floor"}
	if !ok {
		resp["status"], resp["reason"] = "error", "authentication failed"
	}
	out, _ := json.Marshal(resp)
	return writeFrame(c, out) == nil && ok
}

func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

func writeFrame(w io.Writer, p []byte) error {
	b := net.Buffers{binary.BigEndian.AppendUint32(nil, uint32(len(p))), p}
	_, err := b.WriteTo(w)
	return err
}
