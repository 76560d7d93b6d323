package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/astrid-os/astrid-node/internal/capsuletest"
)

var lifecycleRE = regexp.MustCompile(`(?ms)^\[lifecycle\].*?(?:^\[|\z)`)

// CapsulesDir lays out a --capsules directory with the example capsules
// named (folders of capsules/ in this repository), built from source. Each
// keeps its own Capsule.toml but for [lifecycle], which is dropped so the
// node's --idle-timeout applies: tests choose their timeouts by flag.
func CapsulesDir(t testing.TB, names ...string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range names {
		src := filepath.Join(root, "capsules", name)
		manifest, err := os.ReadFile(filepath.Join(src, "Capsule.toml"))
		if err != nil {
			t.Fatal(err)
		}
		manifest = lifecycleRE.ReplaceAll(manifest, nil)
		pkg := capsuletest.Package(t, src, string(manifest))
		if err := os.Rename(pkg, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// CapsuleFlags are the run flags that load the capsules named, sharing the
// test run's compilation cache so that each node does not compile again.
func CapsuleFlags(t testing.TB, names ...string) []string {
	t.Helper()
	return []string{"--capsules", CapsulesDir(t, names...),
		"--cache-dir", capsuletest.CacheDir(t)}
}

// TestCapsuleFlags are the run flags that load one test capsule built from
// srcDir (relative to test/e2e) under each name given, with a manifest
// that binds a socket of the same name.
func TestCapsuleFlags(t testing.TB, srcDir string, names ...string) []string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		manifest := fmt.Sprintf("[package]\nname = %q\nversion = \"0.1.0\"\n"+
			"wasm = \"%s.wasm\"\n\n[capabilities]\nnet_bind = [\"unix:%s\"]\n",
			name, name, name)
		pkg := capsuletest.Package(t, srcDir, manifest)
		if err := os.Rename(pkg, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"--capsules", dir, "--cache-dir", capsuletest.CacheDir(t)}
}
