package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/internal/capsuletest"
	"github.com/astrid-os/astrid-node/socketgw"
)

// runWithArgs runs one instance of c to completion with extra command-line
// arguments, which Load does not offer, and returns the time _start took
// and the heap allocations made meanwhile.
func runWithArgs(b *testing.B, r *Runtime, c *Capsule, args ...string) (time.Duration, uint64) {
	b.Helper()
	id := uuid.NewString()
	var sockets Sockets
	if r.cfg.Sockets != nil {
		sockets = r.cfg.Sockets(c.Manifest.Name, id)
		defer sockets.Close(events.ReasonCapsuleUnloaded)
	}
	in := &instance{
		r: r, capsule: c, id: id, log: r.log, sockets: sockets,
		ready: make([]abi.Ready, maxReady), lastErr: make([]byte, 0, 128),
	}
	in.ctx, in.stop = context.WithCancel(context.Background())
	in.killCtx, in.kill = context.WithCancel(context.Background())
	defer in.stop()
	defer in.kill()

	mc := wazero.NewModuleConfig().WithName("bench." + id).
		WithArgs(append([]string{c.Manifest.Name}, args...)...).
		WithStartFunctions().WithSysWalltime().WithSysNanotime().
		WithRandSource(rand.Reader)
	mod, err := r.wr.InstantiateModule(context.Background(), c.compiled, mc)
	if err != nil {
		b.Fatal(err)
	}
	defer mod.Close(context.Background())
	callCtx := context.WithValue(in.killCtx, instanceKey{}, in)

	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	start := time.Now()
	_, err = mod.ExportedFunction("_start").Call(callCtx)
	took := time.Since(start)
	goruntime.ReadMemStats(&after)

	var ee *sys.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 0) {
		b.Fatalf("bench capsule %v: %v", args, err)
	}
	return took, after.Mallocs - before.Mallocs
}

// BenchmarkHostCall measures guest->host calls against a floor: the same
// guest loop calling a Go function instead, measured in the same run. Each
// figure subtracts a run with zero iterations, which removes the Go
// runtime's start-up. Modes: instance_id (bounds-checks a buffer and
// copies 36 bytes into it), and through the real socket gateway net_wait
// with timeout 0 and net_poll_accept, both finding nothing ready.
func BenchmarkHostCall(b *testing.B) {
	var gw *socketgw.Gateway
	env := newEnv(b, false, func(c *Config) {
		c.Sockets = func(capsule, instance string) Sockets { return gw.Attach(capsule, instance) }
	})
	g, err := socketgw.New(socketgw.Config{RunDir: filepath.Join(b.TempDir(), "run")})
	if err != nil {
		b.Fatal(err)
	}
	gw = g
	b.Cleanup(func() { gw.Close() })
	if err := gw.Bind("bench", "bench"); err != nil {
		b.Fatal(err)
	}
	c := env.add(b, multiSrc, "bench", "[capabilities]\nnet_bind = [\"unix:bench\"]\n")
	n := max(b.N, 1000)

	measure := func(mode string) (float64, float64) {
		t0, m0 := runWithArgs(b, env.r, c, mode, "0")
		tn, mn := runWithArgs(b, env.r, c, mode, strconv.Itoa(n))
		allocs := float64(int64(mn)-int64(m0)) / float64(n)
		return float64(tn-t0) / float64(n), max(allocs, 0)
	}
	// The same module on a wazero runtime without CloseOnContextDone shows
	// what the node's ability to stop a spinning guest costs.
	plain := plainRuntime(b, env.r)
	pc, err := plain.wr.CompileModule(context.Background(),
		readFile(b, filepath.Join(c.Manifest.Dir, c.Manifest.Wasm)))
	if err != nil {
		b.Fatal(err)
	}
	plainCapsule := &Capsule{Manifest: c.Manifest, compiled: pc}
	measurePlain := func(mode string) float64 {
		t0, _ := runWithArgs(b, plain, plainCapsule, mode, "0")
		tn, _ := runWithArgs(b, plain, plainCapsule, mode, strconv.Itoa(n))
		return float64(tn-t0) / float64(n)
	}

	b.ResetTimer()
	floor, _ := measure("floor")
	call, allocs := measure("call")
	wait, waitAllocs := measure("wait")
	poll, pollAllocs := measure("poll")
	plainFloor := measurePlain("floor")
	plainCall := measurePlain("call")
	b.StopTimer()

	b.ReportMetric(plainFloor, "nocod-floor-ns/call")
	b.ReportMetric(plainCall, "nocod-call-ns/call")

	b.ReportMetric(call, "ns/op")
	b.ReportMetric(floor, "floor-ns/call")
	b.ReportMetric(call/floor, "call/floor")
	b.ReportMetric(allocs, "allocs/call")
	b.ReportMetric(wait, "wait-ns/call")
	b.ReportMetric(waitAllocs, "wait-allocs/call")
	b.ReportMetric(poll, "poll-ns/call")
	b.ReportMetric(pollAllocs, "poll-allocs/call")
}

// plainRuntime is a runtime like r's but without CloseOnContextDone, for
// comparison only.
func plainRuntime(b *testing.B, r *Runtime) *Runtime {
	ctx := context.Background()
	p := &Runtime{cfg: r.cfg, log: r.log, cache: wazero.NewCompilationCache(),
		capsules: map[string]*Capsule{}, loaded: map[string]*instance{}}
	p.cfg.Sockets = nil
	p.wr = wazero.NewRuntimeWithConfig(ctx,
		wazero.NewRuntimeConfig().WithCompilationCache(p.cache))
	b.Cleanup(func() { p.closeWazero(ctx) })
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, p.wr); err != nil {
		b.Fatal(err)
	}
	if err := p.instantiateHost(ctx); err != nil {
		b.Fatal(err)
	}
	return p
}

func readFile(b *testing.B, path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkInstantiate instantiates hello from its compiled module, the
// work of an activation before the guest runs.
func BenchmarkInstantiate(b *testing.B) {
	env := newEnv(b, false)
	c := env.add(b, helloSrc, "hello", "")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		mc := wazero.NewModuleConfig().WithName(fmt.Sprintf("inst-%d", i)).WithStartFunctions()
		mod, err := env.r.wr.InstantiateModule(ctx, c.compiled, mc)
		if err != nil {
			b.Fatal(err)
		}
		mod.Close(ctx)
	}
}

// BenchmarkLoadWarmCache is a node start with a warm compilation cache:
// New, Add (compiled code comes from the cache dir), Load, Unload, Close.
func BenchmarkLoadWarmCache(b *testing.B) {
	dir := capsuletest.Package(b, helloSrc,
		"[package]\nname = \"hello\"\nversion = \"1\"\nwasm = \"hello.wasm\"\n")
	cache := b.TempDir()
	ctx := context.Background()
	round := func() (add, load time.Duration) {
		r, err := New(ctx, Config{CacheDir: cache, Grace: testGrace})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close(ctx)
		t0 := time.Now()
		if _, err := r.Add(ctx, dir); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := r.Load(ctx, "hello", events.LoadStart); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := r.Unload(ctx, UnloadRequest{Capsule: "hello"}); err != nil {
			b.Fatal(err)
		}
		return t1.Sub(t0), t2.Sub(t1)
	}

	cold, _ := round() // fills the cache
	b.ResetTimer()
	var add, load time.Duration
	for range b.N {
		a, l := round()
		add, load = add+a, load+l
	}
	b.ReportMetric(float64(cold.Milliseconds()), "cold-compile-ms")
	b.ReportMetric(float64(add.Microseconds())/1000/float64(b.N), "warm-add-ms")
	b.ReportMetric(float64(load.Microseconds())/1000/float64(b.N), "load-ms")
}

// BenchmarkIdleInstanceRSS loads 50 copies of hello under distinct names
// (one instance per capsule) and reports the resident memory each idle
// instance adds, from /proc/self/statm.
func BenchmarkIdleInstanceRSS(b *testing.B) {
	const n = 50
	env := newEnv(b, false)
	for i := range n {
		env.add(b, helloSrc, fmt.Sprintf("hello-%02d", i), "")
	}
	ctx := context.Background()
	b.ResetTimer()
	var perInstance, guestMem float64
	for range b.N {
		seen := len(env.logs.find("hello from instance"))
		// Return freed heap (earlier rounds' instances) to the OS, so the
		// new instances must fault their pages in again.
		debug.FreeOSMemory()
		before := rss(b)
		for i := range n {
			if _, err := env.r.Load(ctx, fmt.Sprintf("hello-%02d", i), events.LoadStart); err != nil {
				b.Fatal(err)
			}
		}
		eventually(b, 30*time.Second, "every hello parked", func() bool {
			return len(env.logs.find("hello from instance")) >= seen+n
		})
		perInstance = float64(rss(b)-before) / n / (1 << 20)
		env.r.mu.Lock()
		guestMem = float64(env.r.loaded["hello-00"].mod.Memory().Size()) / (1 << 20)
		env.r.mu.Unlock()
		for i := range n {
			env.r.Unload(ctx, UnloadRequest{Capsule: fmt.Sprintf("hello-%02d", i)})
		}
	}
	b.ReportMetric(perInstance, "MiB/instance")
	// The guest's linear memory is larger than what it adds to RSS: pages
	// it never touched are not resident.
	b.ReportMetric(guestMem, "guest-mem-MiB")
}

func rss(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skip("no /proc/self/statm:", err)
	}
	f := strings.Fields(string(data))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
