package socketgw_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/astrid-os/astrid-node/socketgw"
)

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0, 0, 0, 5, 'a'})
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2})
	f.Add([]byte{0, 0, 4, 1})
	f.Add(append([]byte{0, 0, 0, 2, 'h', 'i'}, 0, 0, 0, 1, '!'))

	const max = 1024
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var wire bytes.Buffer
		for {
			p, err := socketgw.ReadFrame(r, max)
			if err != nil {
				declared := -1
				if len(data)-wire.Len() >= 4 {
					declared = int(binary.BigEndian.Uint32(data[wire.Len():]))
				}
				switch {
				case errors.Is(err, io.EOF):
					if wire.Len() != len(data) {
						t.Fatalf("EOF with %d bytes unread", len(data)-wire.Len())
					}
				case errors.Is(err, socketgw.ErrFrameTooLarge):
					if declared <= max {
						t.Fatalf("ErrFrameTooLarge for a declared %d", declared)
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
				default:
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(p) > max {
				t.Fatalf("frame of %d bytes passed a limit of %d", len(p), max)
			}
			// What was read re-encodes to exactly the bytes consumed.
			if err := socketgw.WriteFrame(&wire, p); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(wire.Bytes(), data[:wire.Len()]) {
				t.Fatalf("re-encoded frames differ from the input")
			}
		}
	})
}

func FuzzHandshakeRequest(f *testing.F) {
	f.Add([]byte(`{"token":"00","protocol_version":1,"client_version":"x"}`))
	f.Add([]byte(`{"protocol_version":2}`))
	f.Add([]byte(`{"token":null}`))
	f.Add([]byte(` {"a":{"b":[1,2,{}]}} `))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"protocol_version":1e3}`))
	f.Add([]byte(`{"token":"\u0000"}trailing`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := socketgw.ParseHandshakeRequest(data)
		if err != nil {
			return
		}
		if len(data) > socketgw.MaxHandshake {
			t.Fatalf("accepted %d bytes, over the %d limit", len(data), socketgw.MaxHandshake)
		}
		// An accepted request survives a round trip unchanged.
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := socketgw.ParseHandshakeRequest(again)
		if err != nil || back != req {
			t.Fatalf("round trip: got %+v, %v; want %+v", back, err, req)
		}
	})
}
