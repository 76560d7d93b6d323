// Package capsuletest builds real capsules from Go source for tests: the
// wasm module of a package (GOOS=wasip1 GOARCH=wasm) and a capsule
// directory around it. Builds are done once per test process and are
// cheap across processes thanks to the Go build cache.
package capsuletest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/BurntSushi/toml"
)

type buildResult struct {
	once sync.Once
	path string
	err  error
}

var builds sync.Map // absolute package dir -> *buildResult

// Build compiles the Go package in pkgDir (relative to the test's working
// directory or absolute) to a wasip1 module and returns its path. The
// result is shared by every caller in the process.
func Build(tb testing.TB, pkgDir string) string {
	tb.Helper()
	abs, err := filepath.Abs(pkgDir)
	if err != nil {
		tb.Fatalf("capsuletest: %v", err)
	}
	v, _ := builds.LoadOrStore(abs, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() { b.path, b.err = build(abs) })
	if b.err != nil {
		tb.Fatalf("capsuletest: building %s: %v", pkgDir, b.err)
	}
	return b.path
}

// build writes the module to a temporary name and renames it into place,
// so concurrent test processes never see a half-written file.
func build(abs string) (string, error) {
	dir := filepath.Join(SharedDir(), "wasm")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	out := filepath.Join(dir, filepath.Base(abs)+"-"+hex.EncodeToString(sum[:6])+".wasm")

	tmp, err := os.CreateTemp(dir, "build-*.wasm")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())

	cmd := exec.Command("go", "build", "-trimpath", "-o", tmp.Name(), ".")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, msg)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}

// Package lays out a capsule directory in tb.TempDir(): the manifest text
// as Capsule.toml and the module built from srcDir under the file name
// the manifest's package.wasm names. It returns the directory.
func Package(tb testing.TB, srcDir, manifest string) string {
	tb.Helper()
	var doc struct {
		Package struct {
			Wasm string `toml:"wasm"`
		} `toml:"package"`
	}
	if _, err := toml.Decode(manifest, &doc); err != nil || doc.Package.Wasm == "" {
		tb.Fatalf("capsuletest: manifest needs [package] wasm: %v", err)
	}

	wasm := Build(tb, srcDir)
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Capsule.toml"), []byte(manifest), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := copyFile(wasm, filepath.Join(dir, doc.Package.Wasm)); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// SharedDir is the directory test processes share for built modules and
// the compilation cache. It outlives the tests on purpose: the next run
// starts warm.
func SharedDir() string { return filepath.Join(os.TempDir(), "astrid-test-cache") }

// CacheDir returns the wazero compilation cache directory tests share.
// wazero's file cache writes each entry to a temporary file and renames
// it into place, so processes running at the same time can share it.
func CacheDir(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(SharedDir(), "wazero")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatalf("capsuletest: %v", err)
	}
	return dir
}
