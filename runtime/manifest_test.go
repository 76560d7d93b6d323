package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCapsuleDir writes manifest and an (empty, never compiled) wasm file
// named wasm into a new directory and returns the manifest path.
func writeCapsuleDir(t testing.TB, manifest, wasm string) string {
	t.Helper()
	dir := t.TempDir()
	if wasm != "" {
		if err := os.WriteFile(filepath.Join(dir, wasm), []byte("\x00asm"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, ManifestFile)
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodManifest = `[package]
name = "echo"
version = "0.1.0"
wasm = "echo.wasm"

[capabilities]
net_bind = ["unix:echo", "unix:echo-admin"]

[lifecycle]
idle_timeout = "5m"
`

func TestParseManifest(t *testing.T) {
	path := writeCapsuleDir(t, goodManifest, "echo.wasm")
	m, err := ParseManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "echo" || m.Version != "0.1.0" || m.Wasm != "echo.wasm" ||
		strings.Join(m.NetBind, ",") != "echo,echo-admin" ||
		m.IdleTimeout != 5*time.Minute || !m.HasIdleTimeout || m.Dir != filepath.Dir(path) {
		t.Errorf("got %+v", m)
	}

	cases := []struct {
		name, text string
		idle       time.Duration
		has        bool
	}{
		{"never", "[lifecycle]\nidle_timeout = \"0\"\n", 0, true},
		{"absent", "", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := "[package]\nname = \"a\"\nversion = \"1\"\nwasm = \"a.wasm\"\n" + tc.text
			m, err := ParseManifest(writeCapsuleDir(t, text, "a.wasm"))
			if err != nil {
				t.Fatal(err)
			}
			if m.IdleTimeout != tc.idle || m.HasIdleTimeout != tc.has || len(m.NetBind) != 0 {
				t.Errorf("got idle %v has %v netbind %v; want %v %v none",
					m.IdleTimeout, m.HasIdleTimeout, m.NetBind, tc.idle, tc.has)
			}
		})
	}
}

// TestParseManifestErrors: each bad manifest is refused with an error that
// names the file and the key, and the line where the key is.
func TestParseManifestErrors(t *testing.T) {
	const head = "[package]\nname = \"a\"\nversion = \"1\"\nwasm = \"a.wasm\"\n"
	cases := []struct {
		name, text, wasm string
		want             []string // substrings of the error
	}{
		{"unknown key", head + "colour = \"red\"\n", "a.wasm",
			[]string{":5:", `"package.colour"`, "unknown key"}},
		{"unknown table", head + "[network]\nport = 1\n", "a.wasm",
			[]string{":5:", `"network`, "unknown key"}},
		{"bad name", "[package]\nname = \"Echo!\"\nversion = \"1\"\nwasm = \"a.wasm\"\n", "a.wasm",
			[]string{":2:", `"package.name"`, "invalid name"}},
		{"long name", "[package]\nname = \"" + strings.Repeat("a", 64) +
			"\"\nversion = \"1\"\nwasm = \"a.wasm\"\n", "a.wasm",
			[]string{":2:", `"package.name"`}},
		{"missing name", "[package]\nversion = \"1\"\nwasm = \"a.wasm\"\n", "a.wasm",
			[]string{`missing key "package.name"`}},
		{"missing version", "[package]\nname = \"a\"\nwasm = \"a.wasm\"\n", "a.wasm",
			[]string{`missing key "package.version"`}},
		{"missing wasm key", "[package]\nname = \"a\"\nversion = \"1\"\n", "",
			[]string{`missing key "package.wasm"`}},
		{"missing wasm file", head, "",
			[]string{":4:", `"package.wasm"`, "no such file"}},
		{"wasm outside dir", "[package]\nname = \"a\"\nversion = \"1\"\nwasm = \"../a.wasm\"\n",
			"", []string{":4:", `"package.wasm"`, "capsule directory"}},
		{"wasm not .wasm", "[package]\nname = \"a\"\nversion = \"1\"\nwasm = \"a.so\"\n",
			"a.so", []string{":4:", `"package.wasm"`}},
		{"wrong type", "[package]\nname = 7\nversion = \"1\"\nwasm = \"a.wasm\"\n", "a.wasm",
			[]string{"line 2", `"package.name"`, "incompatible types"}},
		{"bad duration", head + "\n[lifecycle]\nidle_timeout = \"5 minutes\"\n", "a.wasm",
			[]string{":7:", `"lifecycle.idle_timeout"`, "invalid duration"}},
		{"negative duration", head + "[lifecycle]\nidle_timeout = \"-1s\"\n", "a.wasm",
			[]string{":6:", `"lifecycle.idle_timeout"`}},
		{"duration not string", head + "[lifecycle]\nidle_timeout = 300\n", "a.wasm",
			[]string{"line 6", `"lifecycle.idle_timeout"`}},
		{"socket without scheme", head + "[capabilities]\nnet_bind = [\"echo\"]\n", "a.wasm",
			[]string{":6:", `"capabilities.net_bind"`, "invalid socket"}},
		{"socket bad name", head + "[capabilities]\nnet_bind = [\"unix:../x\"]\n", "a.wasm",
			[]string{":6:", `"capabilities.net_bind"`}},
		{"duplicate socket", head + "[capabilities]\nnet_bind = [\"unix:a\", \"unix:a\"]\n",
			"a.wasm", []string{":6:", `"capabilities.net_bind"`, "duplicate"}},
		{"net_bind not list", head + "[capabilities]\nnet_bind = \"unix:a\"\n", "a.wasm",
			[]string{"line 6", `"capabilities.net_bind"`}},
		// The parser notices the unclosed header at the newline, on line 2.
		{"syntax", "[package\nname = \"a\"\n", "a.wasm", []string{":2:", "table name"}},
		{"empty version", "[package]\nname = \"a\"\nversion = \"\"\nwasm = \"a.wasm\"\n",
			"a.wasm", []string{":3:", `"package.version"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeCapsuleDir(t, tc.text, tc.wasm)
			_, err := ParseManifest(path)
			if err == nil {
				t.Fatal("got no error")
			}
			msg := err.Error()
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("got %q; want it to contain %q", msg, w)
				}
			}
		})
	}
}

func TestParseManifestBounds(t *testing.T) {
	big := goodManifest + "#" + strings.Repeat("x", MaxManifestSize) + "\n"
	_, err := ParseManifest(writeCapsuleDir(t, big, "echo.wasm"))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversize manifest: got %v; want a size error", err)
	}

	path := writeCapsuleDir(t, goodManifest, "")
	f, err := os.Create(filepath.Join(filepath.Dir(path), "echo.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file: the size check must come before any read.
	if err := f.Truncate(MaxWasmSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = ParseManifest(path)
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("oversize wasm: got %v; want a size error", err)
	}
}

// FuzzParseManifest: no input makes the parser panic, and whatever it
// accepts satisfies the manifest's invariants.
func FuzzParseManifest(f *testing.F) {
	f.Add(goodManifest)
	f.Add("[package]\nname = \"a\"\nversion = \"1\"\nwasm = \"a.wasm\"\n")
	f.Add("[package]\nname = \"a\"\nversion = \"1\"\nwasm = \"echo.wasm\"\n" +
		"[lifecycle]\nidle_timeout = \"0\"\n")
	f.Add("[package\n")
	f.Add("package = { name = \"a\" }\n")
	f.Add("[capabilities]\nnet_bind = [\"unix:a\", \"unix:a\"]\n")
	f.Add("\xff\xfe")

	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "echo.wasm"), []byte("\x00asm"), 0o600); err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(dir, ManifestFile)

	f.Fuzz(func(t *testing.T, text string) {
		m, err := ParseManifestBytes(path, []byte(text))
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		if !ValidName(m.Name) || m.Wasm != "echo.wasm" || m.IdleTimeout < 0 {
			t.Errorf("accepted an invalid manifest: %+v", m)
		}
		seen := map[string]bool{}
		for _, s := range m.NetBind {
			if !ValidName(s) || seen[s] {
				t.Errorf("accepted socket %q in %v", s, m.NetBind)
			}
			seen[s] = true
		}
	})
}
