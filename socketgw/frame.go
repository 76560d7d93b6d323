package socketgw

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
)

// HeaderSize is the size of a frame's length prefix: a big-endian u32.
const HeaderSize = 4

// ErrFrameTooLarge is wrapped by ReadFrame when a declared length exceeds
// the limit, and by WriteFrame when a payload cannot be framed.
var ErrFrameTooLarge = errors.New("frame too large")

// smallFrame is the size up to which a frame is copied into one buffer
// with its header; larger frames go out as a two-part writev so they are
// not copied.
const smallFrame = 64 << 10

// ReadFrame reads one frame from r. A declared length above max is an
// error wrapping ErrFrameTooLarge and nothing after the header is read.
// A stream that ends inside a frame is io.ErrUnexpectedEOF; one that ends
// cleanly between frames is io.EOF.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	n, err := readHeader(r, max)
	if err != nil {
		return nil, err
	}
	return readPayload(r, n, nil)
}

// readHeader reads a frame header and checks the declared length.
func readHeader(r io.Reader, max int) (int, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if max < 0 || uint64(n) > uint64(max) {
		return 0, fmt.Errorf("%w: declared %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	return int(n), nil
}

// readPayload reads n bytes, reusing buf when it is large enough. Memory
// grows with the bytes that actually arrive, not with the declared length,
// so a client that declares a large frame and sends nothing holds little.
func readPayload(r io.Reader, n int, buf []byte) ([]byte, error) {
	if n <= cap(buf) || n <= smallFrame {
		if n > cap(buf) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, unexpected(err)
		}
		return buf, nil
	}

	buf = make([]byte, 0, smallFrame)
	for len(buf) < n {
		if len(buf) == cap(buf) {
			// Double, but never past the declared length.
			buf = slices.Grow(buf, min(cap(buf), n-len(buf)))
		}
		k, err := io.ReadFull(r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil {
			return nil, unexpected(err)
		}
	}
	return buf, nil
}

// unexpected turns a clean EOF inside a frame into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// WriteFrame writes p to w as one frame: a single write for small frames,
// header and payload in one writev (net.Buffers) for large ones.
func WriteFrame(w io.Writer, p []byte) error {
	if uint64(len(p)) > math.MaxUint32 {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(p))
	}
	if len(p) <= smallFrame {
		_, err := w.Write(appendFrame(make([]byte, 0, HeaderSize+len(p)), p))
		return err
	}
	var hdr [HeaderSize]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(p)))
	bufs := net.Buffers{hdr[:], p}
	_, err := bufs.WriteTo(w)
	return err
}

// appendFrame appends p with its header to dst.
func appendFrame(dst, p []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)))
	return append(dst, p...)
}
