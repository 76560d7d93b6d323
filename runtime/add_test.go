package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/astrid-os/astrid-node/internal/capsuletest"
)

func TestAddAll(t *testing.T) {
	env := newEnv(t, false)
	ctx := context.Background()

	if cs, err := env.r.AddAll(ctx, filepath.Join(t.TempDir(), "missing")); err != nil || cs != nil {
		t.Fatalf("missing dir: got %v, %v; want nothing, no error", cs, err)
	}

	// Two capsules, a directory without a manifest and a stray file.
	root := t.TempDir()
	for _, name := range []string{"beta", "alpha"} {
		src := capsuletest.Package(t, helloSrc, "[package]\nname = \""+name+
			"\"\nversion = \"1\"\nwasm = \"m.wasm\"\n")
		if err := os.Rename(src, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "notes"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "README"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cs, err := env.r.AddAll(ctx, root)
	if err != nil || len(cs) != 2 {
		t.Fatalf("got %d capsules, %v; want 2", len(cs), err)
	}
	var names []string
	for _, c := range env.r.Capsules() {
		names = append(names, c.Manifest.Name)
	}
	if strings.Join(names, ",") != "alpha,beta" {
		t.Errorf("Capsules: got %v; want alpha,beta", names)
	}

	// A duplicate name and a module that is not wasm are errors naming
	// the capsule.
	if _, err := env.r.Add(ctx, filepath.Join(root, "alpha")); err == nil ||
		!strings.Contains(err.Error(), `"alpha"`) {
		t.Errorf("duplicate: got %v; want an error naming alpha", err)
	}
	bad := filepath.Join(t.TempDir(), "caps", "broken")
	if err := os.MkdirAll(bad, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bad, "Capsule.toml"),
		[]byte("[package]\nname = \"broken\"\nversion = \"1\"\nwasm = \"b.wasm\"\n"), 0o600)
	os.WriteFile(filepath.Join(bad, "b.wasm"), []byte("not wasm"), 0o600)
	_, err = env.r.AddAll(ctx, filepath.Dir(bad))
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("bad capsule: got %v; want an error naming it", err)
	}
}
