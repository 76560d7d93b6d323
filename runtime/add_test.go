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
	t.Parallel()
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

// TestAddRefusesModules: modules the node cannot run are refused when the
// capsule is added, with an error naming the capsule and the reason.
func TestAddRefusesModules(t *testing.T) {
	t.Parallel()
	env := newEnv(t, false)
	header := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	// One function type () -> (), an import env.foo of it, one function of
	// it exported as _start.
	importsEnv := append(append([]byte{}, header...),
		0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
		0x02, 0x0b, 0x01, 0x03, 'e', 'n', 'v', 0x03, 'f', 'o', 'o', 0x00, 0x00,
		0x03, 0x02, 0x01, 0x00,
		0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x01,
		0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b)
	cases := []struct {
		name string
		wasm []byte
		want string
	}{
		{"garbage", []byte("not wasm"), "compiling"},
		{"no start", header, "exports no _start"},
		{"unknown import", importsEnv, "imports unknown function env.foo"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "Capsule.toml"),
				[]byte("[package]\nname = \"odd\"\nversion = \"1\"\nwasm = \"odd.wasm\"\n"), 0o600)
			os.WriteFile(filepath.Join(dir, "odd.wasm"), tc.wasm, 0o600)
			_, err := env.r.Add(context.Background(), dir)
			if err == nil || !strings.Contains(err.Error(), `"odd"`) ||
				!strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error naming odd and %q", err, tc.want)
			}
		})
	}
}
