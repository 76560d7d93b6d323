// Package schemas holds the JSON Schemas (draft 2020-12) of every message
// astrid-node puts on the wire: the event envelope and its payloads, the
// socket handshake and the control service bodies. Tests validate real
// emitted JSON against them with Validate.
package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schema names, as accepted by Validate.
const (
	IPCMessage           = "ipc-message"
	PayloadConnect       = "payload-connect"
	PayloadDisconnect    = "payload-disconnect"
	PayloadLoaded        = "payload-capsule-loaded"
	PayloadUnloaded      = "payload-capsule-unloaded"
	PayloadHeartbeat     = "payload-heartbeat"
	HandshakeRequest     = "handshake-request"
	HandshakeResponse    = "handshake-response"
	ControlUnloadRequest = "control-unload-request"
	ControlLoadRequest   = "control-load-request"
	ControlReply         = "control-reply"
)

// MaxDocument bounds the documents Validate accepts.
const MaxDocument = 1 << 20

// base is the $id prefix every schema file declares.
const base = "https://github.com/astrid-os/astrid-node/schemas/"

const suffix = ".schema.json"

//go:embed *.schema.json
var files embed.FS

var (
	compileOnce sync.Once
	compiled    map[string]*jsonschema.Schema
	compileErr  error
)

// Names returns the names of all schemas.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), suffix))
	}
	return names
}

// File returns the raw schema document called name.
func File(name string) ([]byte, error) {
	return files.ReadFile(strings.TrimSuffix(name, suffix) + suffix)
}

// Validate checks that data is one JSON document valid against the schema
// called name ("ipc-message" or "ipc-message.schema.json"). The error
// says which keyword failed where.
func Validate(name string, data []byte) error {
	compileOnce.Do(compileAll)
	if compileErr != nil {
		panic("BUG: embedded schemas do not compile: " + compileErr.Error())
	}
	sch, ok := compiled[strings.TrimSuffix(name, suffix)]
	if !ok {
		return fmt.Errorf("no schema named %q", name)
	}
	if len(data) > MaxDocument {
		return fmt.Errorf("document of %d bytes exceeds %d", len(data), MaxDocument)
	}

	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a JSON document: %w", err)
	}
	if err := sch.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("%s: %s", name, ve.Error())
		}
		return err
	}
	return nil
}

func compileAll() {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	names := Names()
	for _, name := range names {
		raw, err := File(name)
		if err != nil {
			compileErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			compileErr = fmt.Errorf("%s: %w", name, err)
			return
		}
		if err := c.AddResource(base+name+suffix, doc); err != nil {
			compileErr = fmt.Errorf("%s: %w", name, err)
			return
		}
	}
	compiled = make(map[string]*jsonschema.Schema, len(names))
	for _, name := range names {
		sch, err := c.Compile(base + name + suffix)
		if err != nil {
			compileErr = fmt.Errorf("%s: %w", name, err)
			return
		}
		compiled[name] = sch
	}
}
