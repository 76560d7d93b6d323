// Package bench measures the node against floors run in the same
// benchmark: the echo capsule behind the real astrid-node binary against
// test/floorserver, a plain Go Unix-socket server with the same framing
// and handshake in a process of its own. Every benchmark prints its
// figures and the ratio to the floor; none asserts a number.
//
//	go test ./test/bench -run '^$' -bench . -benchtime 2000x
package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/events"
	"github.com/astrid-os/astrid-node/socketgw/client"
	"github.com/astrid-os/astrid-node/test/e2e"
)

func TestMain(m *testing.M) {
	code := m.Run()
	e2e.Cleanup()
	os.Exit(code)
}

// target is a server the benchmarks dial: the node's echo socket or the
// floor's.
type target struct {
	socket, token string
}

func (tg target) dial(tb testing.TB) *client.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, tg.socket, tg.token)
	if err != nil {
		tb.Fatalf("dial %s: %v", tg.socket, err)
	}
	return c
}

var (
	floorOnce sync.Once
	floorBin  string
	floorErr  error
)

// startFloor runs test/floorserver in its own process with a fresh token.
func startFloor(tb testing.TB) target {
	tb.Helper()
	floorOnce.Do(func() {
		dir, err := os.MkdirTemp("", "astrid-floor-")
		if err != nil {
			floorErr = err
			return
		}
		floorBin = filepath.Join(dir, "floorserver")
		out, err := exec.Command("go", "build", "-o", floorBin,
			"github.com/astrid-os/astrid-node/test/floorserver").CombinedOutput()
		if err != nil {
			floorErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if floorErr != nil {
		tb.Fatalf("building floorserver: %v", floorErr)
	}

	dir := tb.TempDir()
	var tok [32]byte
	rand.Read(tok[:])
	tg := target{socket: filepath.Join(dir, "floor.sock"), token: filepath.Join(dir, "token")}
	if err := os.WriteFile(tg.token, []byte(hex.EncodeToString(tok[:])), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(floorBin, "--socket", tg.socket, "--token", hex.EncodeToString(tok[:]))
	cmd.SysProcAttr = e2e.ChildAttr()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		tb.Fatalf("floorserver: %q", line)
	}
	return tg
}

// startNode runs the real binary with the echo capsule.
func startNode(tb testing.TB, extra ...string) (*e2e.Node, target) {
	tb.Helper()
	args := append(e2e.CapsuleFlags(tb, "echo"), "--log-level", "warn",
		"--idle-timeout", "0", "--max-streams", "16")
	n := e2e.StartNode(tb, append(args, extra...)...)
	return n, target{socket: filepath.Join(n.RunDir(), "echo.sock"),
		token: filepath.Join(n.RunDir(), "system.token")}
}

// block is how many samples of one side a benchmark takes before it
// switches between node and floor.
const block = 250

// percentile returns the p-th percentile (0..100) of ds, sorting it.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

// roundTrips times n echo round trips of payload on c.
func roundTrips(tb testing.TB, c *client.Conn, payload []byte, n int) []time.Duration {
	tb.Helper()
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := c.WriteFrame(payload); err != nil {
			tb.Fatal(err)
		}
		got, err := c.ReadFrame()
		if err != nil || len(got) != len(payload) {
			tb.Fatalf("echo: %d bytes, %v", len(got), err)
		}
		out = append(out, time.Since(start))
	}
	return out
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// BenchmarkRoundTrip64 is the 64 B round trip, p50 and p99, through the
// node's echo capsule and through the floor. Target: node ≤ 1.5× floor.
func BenchmarkRoundTrip64(b *testing.B) {
	_, node := startNode(b)
	floor := startFloor(b)
	payload := make([]byte, 64)
	nc, fc := node.dial(b), floor.dial(b)
	defer nc.Close()
	defer fc.Close()
	roundTrips(b, nc, payload, 200) // warm both paths
	roundTrips(b, fc, payload, 200)

	// Alternate node and floor in blocks, so that a change in machine load
	// during the run weighs on both alike, while each block runs warm as
	// a steady stream of requests would.
	b.ResetTimer()
	var nd, fd []time.Duration
	for done := 0; done < b.N; done += block {
		k := min(block, b.N-done)
		nd = append(nd, roundTrips(b, nc, payload, k)...)
		fd = append(fd, roundTrips(b, fc, payload, k)...)
	}
	b.StopTimer()
	np50, np99 := percentile(nd, 50), percentile(nd, 99)
	fp50, fp99 := percentile(fd, 50), percentile(fd, 99)
	b.ReportMetric(us(np50), "node-p50-µs")
	b.ReportMetric(us(np99), "node-p99-µs")
	b.ReportMetric(us(fp50), "floor-p50-µs")
	b.ReportMetric(us(fp99), "floor-p99-µs")
	b.ReportMetric(float64(np50)/float64(fp50), "p50-x-floor")
	b.ReportMetric(float64(np99)/float64(fp99), "p99-x-floor")
}

// BenchmarkThroughput1MiB sends 1 MiB frames and reads them back.
// Target: node ≥ 60% of the floor's throughput.
func BenchmarkThroughput1MiB(b *testing.B) {
	_, node := startNode(b)
	floor := startFloor(b)
	payload := make([]byte, 1<<20)
	nc, fc := node.dial(b), floor.dial(b)
	defer nc.Close()
	defer fc.Close()
	roundTrips(b, nc, payload, 5)
	roundTrips(b, fc, payload, 5)

	rate := func(c *client.Conn) float64 {
		start := time.Now()
		roundTrips(b, c, payload, b.N)
		// Each round trip moves the frame twice across the socket.
		return float64(2*b.N*len(payload)) / time.Since(start).Seconds() / (1 << 20)
	}
	b.ResetTimer()
	n, f := rate(nc), rate(fc)
	b.StopTimer()
	b.ReportMetric(n, "node-MiB/s")
	b.ReportMetric(f, "floor-MiB/s")
	b.ReportMetric(n/f, "x-floor")
}

// BenchmarkIdleStreams is the p99 of one active client while 7 others sit
// idle on the same capsule, against the p99 of that client alone.
// Target: ≤ 2× the single-client p99.
func BenchmarkIdleStreams(b *testing.B) {
	_, node := startNode(b)
	payload := make([]byte, 64)
	active := node.dial(b)
	defer active.Close()
	roundTrips(b, active, payload, 200)

	b.ResetTimer()
	alone := roundTrips(b, active, payload, b.N)
	var idle []*client.Conn
	for range 7 {
		c := node.dial(b)
		defer c.Close()
		roundTrips(b, c, payload, 1) // accepted and served, then silent
		idle = append(idle, c)
	}
	crowd := roundTrips(b, active, payload, b.N)
	b.StopTimer()
	a99, c99 := percentile(alone, 99), percentile(crowd, 99)
	b.ReportMetric(us(a99), "alone-p99-µs")
	b.ReportMetric(us(c99), "with-7-idle-p99-µs")
	b.ReportMetric(float64(c99)/float64(a99), "x-alone")
}

// connects times n dial+handshake+close cycles.
func connects(tb testing.TB, tg target, n int) []time.Duration {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		c := tg.dial(tb)
		out = append(out, time.Since(start))
		c.Close()
	}
	return out
}

// BenchmarkHandshake is connect + UID check + handshake per connection,
// against the floor's bare handshake (same JSON, constant-time compare).
// Target: p50 ≤ 1.3× the floor.
func BenchmarkHandshake(b *testing.B) {
	_, node := startNode(b)
	floor := startFloor(b)
	connects(b, node, 20)
	connects(b, floor, 20)

	b.ResetTimer()
	var nd, fd []time.Duration
	for done := 0; done < b.N; done += block {
		k := min(block, b.N-done)
		nd = append(nd, connects(b, node, k)...)
		fd = append(fd, connects(b, floor, k)...)
	}
	b.StopTimer()
	np50, fp50 := percentile(nd, 50), percentile(fd, 50)
	b.ReportMetric(us(np50), "node-p50-µs")
	b.ReportMetric(us(percentile(nd, 99)), "node-p99-µs")
	b.ReportMetric(us(fp50), "floor-p50-µs")
	b.ReportMetric(float64(np50)/float64(fp50), "p50-x-floor")
}

// BenchmarkAcceptToEvent is the time from the node accepting a stream to
// client.v1.connected reaching a NATS subscriber connected over TCP. The
// gateway publishes the event inside the accept, and stamps its timestamp
// there, so receipt time minus the event's timestamp is accept-to-event
// (one machine, one clock). Connect-to-event, from the client's first
// syscall, is reported beside it as an upper bound that includes the
// handshake. Target: accept-to-event p99 ≤ 200 µs.
func BenchmarkAcceptToEvent(b *testing.B) {
	n, node := startNode(b)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	type seen struct {
		at    time.Time
		stamp time.Time
	}
	ch := make(chan seen, 1)
	sub, err := nc.Subscribe(events.SubjectConnected, func(m *nats.Msg) {
		at := time.Now()
		ev, err := events.Decode(m)
		if err != nil {
			b.Error(err)
		}
		ch <- seen{at, ev.Timestamp}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	one := func() (accept, connect time.Duration) {
		start := time.Now()
		c := node.dial(b)
		var s seen
		select {
		case s = <-ch:
		case <-time.After(10 * time.Second):
			b.Fatal("no client.v1.connected")
		}
		c.Close()
		return s.at.Sub(s.stamp), s.at.Sub(start)
	}
	for range 20 {
		one()
	}
	b.ResetTimer()
	acc := make([]time.Duration, 0, b.N)
	con := make([]time.Duration, 0, b.N)
	for range b.N {
		a, c := one()
		acc, con = append(acc, a), append(con, c)
	}
	b.StopTimer()

	// The floor: a plain publish from another connection to the same
	// subscriber through the node's server, timed the same way.
	fl := make([]time.Duration, 0, b.N)
	pub, err := nats.Connect(n.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	floorCh := make(chan time.Duration, 1)
	fsub, err := nc.Subscribe("bench.floor", func(m *nats.Msg) {
		var sent time.Time
		sent.UnmarshalBinary(m.Data)
		floorCh <- time.Since(sent)
	})
	if err != nil {
		b.Fatal(err)
	}
	defer fsub.Unsubscribe()
	nc.Flush()
	for range b.N {
		stamp, _ := time.Now().MarshalBinary()
		pub.Publish("bench.floor", stamp)
		fl = append(fl, <-floorCh)
	}
	b.ReportMetric(us(percentile(fl, 50)), "floor-pub-to-sub-p50-µs")
	b.ReportMetric(us(percentile(fl, 99)), "floor-pub-to-sub-p99-µs")
	b.ReportMetric(us(percentile(acc, 50)), "accept-to-event-p50-µs")
	b.ReportMetric(us(percentile(acc, 99)), "accept-to-event-p99-µs")
	b.ReportMetric(us(percentile(con, 50)), "connect-to-event-p50-µs")
	b.ReportMetric(us(percentile(con, 99)), "connect-to-event-p99-µs")
}

// BenchmarkReactivation is connect-to-first-echo on an unloaded capsule
// (socket activation from the compiled module kept in memory) against the
// same on a loaded one, measured in the same run. Target: p50 ≤ 5 ms.
func BenchmarkReactivation(b *testing.B) {
	n, node := startNode(b)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	payload := make([]byte, 64)
	firstEcho := func() time.Duration {
		start := time.Now()
		c := node.dial(b)
		roundTrips(b, c, payload, 1)
		d := time.Since(start)
		c.Close()
		return d
	}
	unload := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The stream just closed; the node may not have seen the hang-up
		// yet, so an IfIdle-free unload is used and retried until done.
		for {
			_, err := control.Call(ctx, nc, n.ID, control.VerbUnload,
				control.UnloadRequest{Capsule: "echo", Reason: "request"})
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				b.Fatalf("unload: %v", err)
			}
		}
	}
	for range 5 {
		firstEcho()
		unload()
	}

	b.ResetTimer()
	cold := make([]time.Duration, 0, b.N)
	warm := make([]time.Duration, 0, b.N)
	for range b.N {
		cold = append(cold, firstEcho())
		warm = append(warm, firstEcho())
		b.StopTimer()
		unload()
		b.StartTimer()
	}
	b.StopTimer()
	c50, w50 := percentile(cold, 50), percentile(warm, 50)
	b.ReportMetric(us(c50), "activation-p50-µs")
	b.ReportMetric(us(percentile(cold, 99)), "activation-p99-µs")
	b.ReportMetric(us(w50), "warm-p50-µs")
	b.ReportMetric(us(percentile(warm, 99)), "warm-p99-µs")
	b.ReportMetric(float64(c50)/float64(w50), "p50-x-warm")
}
