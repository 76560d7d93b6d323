// Package runtime loads capsules (Capsule.toml + a wasip1 module) into one
// wazero runtime, runs each instance's guest in its own goroutine, serves
// the host ABI of package abi to it, and unloads it on request, on node
// shutdown or when it crashes. docs/capsules.md describes the lifecycle and
// docs/abi.md the host functions.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
)

// Errors callers decide on. Runtime methods wrap them with details.
var (
	ErrUnknownCapsule = errors.New("unknown capsule")
	ErrNotLoaded      = errors.New("capsule not loaded")
	ErrAlreadyLoaded  = errors.New("capsule already loaded")
	ErrBusy           = errors.New("instance has open streams")
	ErrClosed         = errors.New("runtime closed")
)

// Defaults for zero Config fields.
const (
	DefaultGrace       = 2 * time.Second
	DefaultMemoryPages = 1024 // 64 MiB of 64 KiB wasm pages
)

// Config configures a Runtime. Zero fields take the documented defaults.
type Config struct {
	CacheDir    string            // wazero compilation cache dir; "" = in-memory only
	Logger      *slog.Logger      // nil: discard
	Events      *events.Publisher // nil: publish nothing (unit tests)
	Sockets     SocketsFunc       // nil: net_* calls return abi.ErrNotFound
	Grace       time.Duration     // how long an unload waits before force-closing; default 2s
	MemoryPages uint32            // guest memory ceiling in 64 KiB pages; default 1024

	// DefaultIdleTimeout is put into capsule.v1.loaded and InstanceInfo
	// when the manifest has no idle_timeout.
	DefaultIdleTimeout time.Duration

	// OnExit is called after an instance ended by itself (a trap or an
	// exit, which the node treats as a crash); err says how it ended. It
	// runs synchronously, before the instance's streams are closed and its
	// sockets detach, so the node has recorded the crash before a waiting
	// client can trigger the next activation. It must not block and must
	// not call back into the Runtime.
	OnExit func(info InstanceInfo, err error)
}

// Runtime is the node's capsule runtime: one wazero runtime with a
// compilation cache, the capsules added to it and their loaded instances.
type Runtime struct {
	cfg   Config
	log   *slog.Logger
	wr    wazero.Runtime
	cache wazero.CompilationCache

	mu       sync.Mutex
	capsules map[string]*Capsule  // guarded by mu
	loaded   map[string]*instance // guarded by mu; by capsule name
	closed   bool                 // guarded by mu
}

// Capsule is a capsule added to the runtime: its manifest and its compiled
// module, kept in memory for the runtime's life so that each activation
// only instantiates.
type Capsule struct {
	Manifest *Manifest

	compiled wazero.CompiledModule
	loadMu   sync.Mutex // serialises Loads of this capsule
}

// New creates the node's wazero runtime with WASI preview1 and the astrid
// host module.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.MemoryPages == 0 {
		cfg.MemoryPages = DefaultMemoryPages
	}

	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache %s: %w", cfg.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}

	// CloseOnContextDone is what lets an unload stop a guest that never
	// calls the host; each guest runs inside one long _start call, so its
	// per-call cost is paid once per instance.
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithMemoryLimitPages(cfg.MemoryPages).
		WithCloseOnContextDone(true)
	wr := wazero.NewRuntimeWithConfig(ctx, rc)

	r := &Runtime{
		cfg:      cfg,
		log:      cfg.Logger,
		wr:       wr,
		cache:    cache,
		capsules: map[string]*Capsule{},
		loaded:   map[string]*instance{},
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, wr); err != nil {
		r.closeWazero(ctx)
		return nil, fmt.Errorf("instantiating wasi: %w", err)
	}
	if err := r.instantiateHost(ctx); err != nil {
		r.closeWazero(ctx)
		return nil, fmt.Errorf("instantiating host module: %w", err)
	}
	return r, nil
}

// Add parses the capsule in dir and compiles its module.
func (r *Runtime) Add(ctx context.Context, dir string) (*Capsule, error) {
	m, err := ParseManifest(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	_, dup := r.capsules[m.Name]
	closed := r.closed
	r.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case dup:
		return nil, fmt.Errorf("capsule %q in %s: a capsule of that name was already added",
			m.Name, dir)
	}

	wasm, err := readBounded(filepath.Join(m.Dir, m.Wasm), MaxWasmSize)
	if err != nil {
		return nil, fmt.Errorf("capsule %q: %w", m.Name, err)
	}
	compiled, err := r.wr.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("capsule %q: compiling %s: %w", m.Name, m.Wasm, err)
	}
	if err := checkModule(compiled); err != nil {
		compiled.Close(ctx)
		return nil, fmt.Errorf("capsule %q: %s: %w", m.Name, m.Wasm, err)
	}

	c := &Capsule{Manifest: m, compiled: compiled}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.capsules[m.Name]; dup || r.closed {
		compiled.Close(ctx)
		if r.closed {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("capsule %q in %s: a capsule of that name was already added",
			m.Name, dir)
	}
	r.capsules[m.Name] = c
	return c, nil
}

// AddAll adds every subdirectory of dir that holds a Capsule.toml, in name
// order. A missing dir is not an error (a node may run no capsules); a bad
// capsule is, and stops the walk.
func (r *Runtime) AddAll(ctx context.Context, dir string) ([]*Capsule, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("capsules dir: %w", err)
	}

	var added []*Capsule
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(sub, ManifestFile)); err != nil {
			continue
		}
		c, err := r.Add(ctx, sub)
		if err != nil {
			return added, fmt.Errorf("capsule dir %s: %w", sub, err)
		}
		added = append(added, c)
	}
	return added, nil
}

// Capsule returns the added capsule called name.
func (r *Runtime) Capsule(name string) (*Capsule, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.capsules[name]
	return c, ok
}

// Capsules returns the added capsules sorted by name.
func (r *Runtime) Capsules() []*Capsule {
	r.mu.Lock()
	cs := make([]*Capsule, 0, len(r.capsules))
	for _, c := range r.capsules {
		cs = append(cs, c)
	}
	r.mu.Unlock()
	sort.Slice(cs, func(i, j int) bool { return cs[i].Manifest.Name < cs[j].Manifest.Name })
	return cs
}

// Close unloads every instance (reason shutdown) and closes the wazero
// runtime. It waits for the unloads until ctx ends.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	names := make([]string, 0, len(r.loaded))
	for n := range r.loaded {
		names = append(names, n)
	}
	r.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Unload(ctx, UnloadRequest{Capsule: n, Reason: events.UnloadShutdown})
			if err != nil && !errors.Is(err, ErrNotLoaded) {
				errs[i] = err
			}
		}()
	}
	wg.Wait()

	errs = append(errs, r.closeWazero(ctx))
	return errors.Join(errs...)
}

func (r *Runtime) closeWazero(ctx context.Context) error {
	return errors.Join(r.wr.Close(ctx), r.cache.Close(ctx))
}

// checkModule refuses, when the capsule is added rather than at its first
// activation, a module that is not a wasip1 command or imports anything
// the node does not provide.
func checkModule(cm wazero.CompiledModule) error {
	if _, ok := cm.ExportedFunctions()["_start"]; !ok {
		return errors.New("exports no _start: build it as a wasip1 command")
	}
	if len(cm.ImportedMemories()) > 0 {
		return errors.New("imports a memory; a capsule must define its own")
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch {
		case mod == wasi_snapshot_preview1.ModuleName:
		case mod == abi.Module && isHostFunc(name):
		default:
			return fmt.Errorf("imports unknown function %s.%s", mod, name)
		}
	}
	return nil
}

// readBounded reads a whole file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
