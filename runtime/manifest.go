package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// ManifestFile is the file name of a capsule's manifest inside its directory.
const ManifestFile = "Capsule.toml"

// Size bounds for what a capsule directory may hand the node.
const (
	MaxManifestSize = 64 << 10
	MaxWasmSize     = 64 << 20
	maxVersionLen   = 64
	maxNetBind      = 64
)

// nameRE is the shape of capsule and socket names: they become NATS header
// values, file names and socket paths, so they stay short and plain.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ValidName reports whether s is a valid capsule or socket name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Manifest is a parsed Capsule.toml.
type Manifest struct {
	Name    string
	Version string
	Wasm    string   // file name of the module, relative to Dir
	NetBind []string // socket names, "unix:" stripped, in manifest order
	// IdleTimeout is [lifecycle] idle_timeout; 0 means never unload. It is
	// meaningful only when HasIdleTimeout is set; otherwise the node
	// default applies.
	IdleTimeout    time.Duration
	HasIdleTimeout bool
	Dir            string // the capsule directory
}

// CanBind reports whether the capsule holds the net_bind capability for
// socket name. It does not allocate when name is a string(bytes)
// conversion at the call site.
func (m *Manifest) CanBind(name string) bool {
	for _, s := range m.NetBind {
		if s == name {
			return true
		}
	}
	return false
}

// manifestDoc mirrors the TOML layout. Pointers tell "absent" from "empty".
type manifestDoc struct {
	Package struct {
		Name    *string `toml:"name"`
		Version *string `toml:"version"`
		Wasm    *string `toml:"wasm"`
	} `toml:"package"`
	Capabilities struct {
		NetBind []string `toml:"net_bind"`
	} `toml:"capabilities"`
	Lifecycle struct {
		IdleTimeout *string `toml:"idle_timeout"`
	} `toml:"lifecycle"`
}

// ParseManifest reads and validates the Capsule.toml at path, including
// the presence and size of the wasm file it names.
func ParseManifest(path string) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()

	// Read one byte past the bound so an oversize file is detected without
	// reading all of it.
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ParseManifestBytes(path, data)
}

// ParseManifestBytes validates data as the Capsule.toml at path. Errors name
// the file and, where known, the key and its line.
func ParseManifestBytes(path string, data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("%s: manifest larger than %d bytes", path, MaxManifestSize)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%s: manifest is not valid UTF-8", path)
	}

	var doc manifestDoc
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0].String()
		return nil, keyErr(path, data, k, "unknown key %q", k)
	}

	m := &Manifest{Dir: filepath.Dir(path)}
	if err := m.fill(path, data, &doc); err != nil {
		return nil, err
	}
	if err := m.checkWasm(path, data); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manifest) fill(path string, data []byte, doc *manifestDoc) error {
	p := &doc.Package
	switch {
	case p.Name == nil:
		return fmt.Errorf("%s: missing key \"package.name\"", path)
	case !ValidName(*p.Name):
		return keyErr(path, data, "package.name",
			"invalid name %q: want [a-z][a-z0-9-]{0,62}", *p.Name)
	case p.Version == nil:
		return fmt.Errorf("%s: missing key \"package.version\"", path)
	case *p.Version == "" || len(*p.Version) > maxVersionLen ||
		strings.ContainsFunc(*p.Version, isSpaceOrControl):
		return keyErr(path, data, "package.version",
			"invalid version %q: want 1-%d printable characters", *p.Version, maxVersionLen)
	case p.Wasm == nil:
		return fmt.Errorf("%s: missing key \"package.wasm\"", path)
	}
	m.Name, m.Version, m.Wasm = *p.Name, *p.Version, *p.Wasm

	nb := doc.Capabilities.NetBind
	if len(nb) > maxNetBind {
		return keyErr(path, data, "capabilities.net_bind",
			"%d sockets; at most %d", len(nb), maxNetBind)
	}
	for _, s := range nb {
		name, ok := strings.CutPrefix(s, "unix:")
		if !ok || !ValidName(name) {
			return keyErr(path, data, "capabilities.net_bind",
				"invalid socket %q: want \"unix:<name>\" with name [a-z][a-z0-9-]{0,62}", s)
		}
		if m.CanBind(name) {
			return keyErr(path, data, "capabilities.net_bind", "duplicate socket %q", s)
		}
		m.NetBind = append(m.NetBind, name)
	}

	if it := doc.Lifecycle.IdleTimeout; it != nil {
		d, err := time.ParseDuration(*it)
		if err != nil || d < 0 {
			return keyErr(path, data, "lifecycle.idle_timeout",
				"invalid duration %q: want a Go duration such as \"5m\", or \"0\" for never", *it)
		}
		m.IdleTimeout, m.HasIdleTimeout = d, true
	}
	return nil
}

// checkWasm insists on a plain .wasm file inside the capsule directory, so a
// manifest cannot point the node at some other file on the host.
func (m *Manifest) checkWasm(path string, data []byte) error {
	w := m.Wasm
	if w == "" || w != filepath.Base(w) || w == "." || w == ".." ||
		strings.ContainsRune(w, '\\') || !strings.HasSuffix(w, ".wasm") {
		return keyErr(path, data, "package.wasm",
			"invalid wasm file %q: want a file name ending in .wasm in the capsule directory", w)
	}
	fi, err := os.Stat(filepath.Join(m.Dir, w))
	switch {
	case err != nil:
		return keyErr(path, data, "package.wasm", "wasm file: %v", err)
	case !fi.Mode().IsRegular():
		return keyErr(path, data, "package.wasm", "wasm file %q is not a regular file", w)
	case fi.Size() > MaxWasmSize:
		return keyErr(path, data, "package.wasm",
			"wasm file %q is %d bytes; at most %d", w, fi.Size(), MaxWasmSize)
	}
	return nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// keyErr formats a semantic error with the file, the key's line (when it can
// be found) and the key.
func keyErr(path string, data []byte, key, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if line := keyLine(data, key); line > 0 {
		return fmt.Errorf("%s:%d: key %q: %s", path, line, key, msg)
	}
	return fmt.Errorf("%s: key %q: %s", path, key, msg)
}

// keyLine finds the line of a dotted key such as "package.name" by
// scanning table headers and "key =" lines. BurntSushi/toml keeps key
// positions private, so this is a best effort: it handles the plain layout
// manifests use and returns 0 for anything fancier (inline tables,
// dotted keys, quoted keys).
func keyLine(data []byte, key string) int {
	table, leaf := "", key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		table, leaf = key[:i], key[i+1:]
	}

	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxManifestSize+1)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "[") {
			h := strings.Trim(l, "[] \t")
			if i := strings.IndexByte(h, ']'); i >= 0 {
				h = h[:i]
			}
			cur = strings.TrimSpace(h)
			if cur == key {
				return n
			}
			continue
		}
		k, _, ok := strings.Cut(l, "=")
		if ok && cur == table && strings.TrimSpace(k) == leaf {
			return n
		}
	}
	return 0
}
