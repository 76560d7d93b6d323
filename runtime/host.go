package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"

	"github.com/astrid-os/astrid-node/abi"
)

// maxLogMessage bounds one message passed to the log host function.
const maxLogMessage = 64 << 10

// hostFunc is one function of the "astrid" import module. fn gets the
// calling instance and the arguments and returns the i32 result; it must
// not allocate on paths a busy capsule takes per frame.
type hostFunc struct {
	name   string
	params int // number of i32 parameters
	fn     func(in *instance, mem api.Memory, args []uint64) int32
}

var hostFuncs = []hostFunc{
	{abi.FuncLog, 3, hostLog},
	{abi.FuncLastError, 2, hostLastError},
	{abi.FuncInstance, 2, hostInstanceID},
	{abi.FuncNetBindUnix, 2, hostNetBindUnix},
	{abi.FuncNetAccept, 1, hostNetAccept},
	{abi.FuncNetPollAccept, 1, hostNetPollAccept},
	{abi.FuncNetRead, 4, hostNetRead},
	{abi.FuncNetWrite, 3, hostNetWrite},
	{abi.FuncNetClose, 1, hostNetClose},
	{abi.FuncNetWait, 3, hostNetWait},
}

func isHostFunc(name string) bool {
	for _, h := range hostFuncs {
		if h.name == name {
			return true
		}
	}
	return false
}

// instantiateHost registers the astrid module once per runtime. The
// functions find their instance through the context of the guest's
// _start call, so one host module serves every instance.
func (r *Runtime) instantiateHost(ctx context.Context) error {
	b := r.wr.NewHostModuleBuilder(abi.Module)
	for _, h := range hostFuncs {
		params := make([]api.ValueType, h.params)
		for i := range params {
			params[i] = api.ValueTypeI32
		}
		fn := h.fn
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(
				func(ctx context.Context, mod api.Module, stack []uint64) {
					stack[0] = api.EncodeI32(fn(callingInstance(ctx), mod.Memory(), stack))
				}), params, []api.ValueType{api.ValueTypeI32}).
			WithName(h.name).
			Export(h.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

func callingInstance(ctx context.Context) *instance {
	in, ok := ctx.Value(instanceKey{}).(*instance)
	if !ok {
		panic("BUG: host function called outside an instance's _start")
	}
	return in
}

// guestBytes returns the guest memory [ptr, ptr+n) as a slice aliasing it,
// or false if any of it lies outside memory. The sum is taken in 64 bits
// so a pair that overflows uint32 is rejected, not wrapped.
func guestBytes(mem api.Memory, ptr, n uint32) ([]byte, bool) {
	if mem == nil || uint64(ptr)+uint64(n) > uint64(mem.Size()) {
		return nil, false
	}
	return mem.Read(ptr, n)
}

// fail records the last error of the instance and returns code. It does
// not allocate once lastErr has grown.
func (in *instance) fail(fn string, code abi.Errno) int32 {
	in.lastErr = append(in.lastErr[:0], fn...)
	in.lastErr = append(in.lastErr, ": "...)
	in.lastErr = append(in.lastErr, code.Error()...)
	return int32(code)
}

// failErr maps an error from Sockets to a code: an abi.Errno (possibly
// wrapped) keeps its code, a context error during an unload becomes
// ErrUnloading and anything else ErrIO.
func (in *instance) failErr(fn string, err error) int32 {
	if code, ok := err.(abi.Errno); ok {
		return in.fail(fn, code)
	}
	if in.ctx.Err() != nil && errors.Is(err, in.ctx.Err()) {
		return in.fail(fn, abi.ErrUnloading)
	}
	code := abi.ErrIO
	var e abi.Errno
	if errors.As(err, &e) {
		code = e
	}
	in.lastErr = append(in.lastErr[:0], fn...)
	in.lastErr = append(in.lastErr, ": "...)
	in.lastErr = append(in.lastErr, err.Error()...)
	return int32(code)
}

func arg32(args []uint64, i int) uint32 { return uint32(args[i]) }

// hostLog: log(level, msg_ptr, msg_len) -> 0 or errno.
func hostLog(in *instance, mem api.Memory, args []uint64) int32 {
	level, ptr, n := int32(arg32(args, 0)), arg32(args, 1), arg32(args, 2)
	switch level {
	case abi.LevelDebug, abi.LevelInfo, abi.LevelWarn, abi.LevelError:
	default:
		return in.fail(abi.FuncLog, abi.ErrInvalid)
	}
	msg, ok := guestBytes(mem, ptr, n)
	switch {
	case !ok:
		return in.fail(abi.FuncLog, abi.ErrBadPointer)
	case n > maxLogMessage:
		return in.fail(abi.FuncLog, abi.ErrTooLarge)
	case !utf8.Valid(msg):
		return in.fail(abi.FuncLog, abi.ErrInvalid)
	}
	in.log.Log(context.Background(), slog.Level(level), string(msg))
	return 0
}

// hostLastError: last_error(buf_ptr, buf_cap) -> full message length. It
// copies as much of the message as fits.
func hostLastError(in *instance, mem api.Memory, args []uint64) int32 {
	buf, ok := guestBytes(mem, arg32(args, 0), arg32(args, 1))
	if !ok {
		return int32(abi.ErrBadPointer) // keeps the message it would report
	}
	copy(buf, in.lastErr)
	return int32(len(in.lastErr))
}

// hostInstanceID: instance_id(buf_ptr, buf_cap) -> length of the UUID.
func hostInstanceID(in *instance, mem api.Memory, args []uint64) int32 {
	buf, ok := guestBytes(mem, arg32(args, 0), arg32(args, 1))
	if !ok {
		return in.fail(abi.FuncInstance, abi.ErrBadPointer)
	}
	copy(buf, in.id)
	return int32(len(in.id))
}

// hostNetBindUnix: net_bind_unix(name_ptr, name_len) -> listener handle.
// The capability gate runs before the gateway is asked.
func hostNetBindUnix(in *instance, mem api.Memory, args []uint64) int32 {
	const fn = abi.FuncNetBindUnix
	name, ok := guestBytes(mem, arg32(args, 0), arg32(args, 1))
	if !ok {
		return in.fail(fn, abi.ErrBadPointer)
	}
	if !validNameBytes(name) {
		return in.fail(fn, abi.ErrInvalid)
	}
	if !canBindBytes(in.capsule.Manifest, name) {
		in.log.Warn("net_bind_unix refused: capsule lacks the net_bind capability",
			"security_event", true, "socket", string(name))
		return in.fail(fn, abi.ErrPermission)
	}
	if in.sockets == nil {
		return in.fail(fn, abi.ErrNotFound)
	}
	h, err := in.sockets.Bind(string(name))
	if err != nil {
		return in.failErr(fn, err)
	}
	return h
}

func canBindBytes(m *Manifest, name []byte) bool {
	for _, s := range m.NetBind {
		if string(name) == s {
			return true
		}
	}
	return false
}

// validNameBytes is ValidName without the string conversion.
func validNameBytes(b []byte) bool {
	if len(b) == 0 || len(b) > 63 || b[0] < 'a' || b[0] > 'z' {
		return false
	}
	for _, c := range b[1:] {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// hostNetAccept: net_accept(listener) -> stream handle; blocks until a
// stream is ready or the instance is unloading.
func hostNetAccept(in *instance, _ api.Memory, args []uint64) int32 {
	if in.sockets == nil {
		return in.fail(abi.FuncNetAccept, abi.ErrNotFound)
	}
	h, err := in.sockets.Accept(in.ctx, int32(arg32(args, 0)))
	if err != nil {
		return in.failErr(abi.FuncNetAccept, err)
	}
	return h
}

// hostNetPollAccept: net_poll_accept(listener) -> stream handle or
// ErrPending.
func hostNetPollAccept(in *instance, _ api.Memory, args []uint64) int32 {
	if in.sockets == nil {
		return in.fail(abi.FuncNetPollAccept, abi.ErrNotFound)
	}
	h, err := in.sockets.PollAccept(int32(arg32(args, 0)))
	if err != nil {
		return in.failErr(abi.FuncNetPollAccept, err)
	}
	return h
}

// hostNetRead: net_read(stream, buf_ptr, buf_cap, need_ptr) -> frame
// length. On ErrBufTooSmall the frame's length is stored at need_ptr as a
// little-endian u32 and the frame stays queued.
func hostNetRead(in *instance, mem api.Memory, args []uint64) int32 {
	const fn = abi.FuncNetRead
	buf, ok := guestBytes(mem, arg32(args, 1), arg32(args, 2))
	if !ok {
		return in.fail(fn, abi.ErrBadPointer)
	}
	need, ok := guestBytes(mem, arg32(args, 3), 4)
	if !ok {
		return in.fail(fn, abi.ErrBadPointer)
	}
	if in.sockets == nil {
		return in.fail(fn, abi.ErrNotFound)
	}
	n, err := in.sockets.Read(int32(arg32(args, 0)), buf)
	if err != nil {
		if code, ok := err.(abi.Errno); ok && code == abi.ErrBufTooSmall {
			binary.LittleEndian.PutUint32(need, uint32(n))
		}
		return in.failErr(fn, err)
	}
	return int32(n)
}

// hostNetWrite: net_write(stream, ptr, len) -> 0 or errno. Blocks until the
// frame is written, the write timeout passes or the instance unloads.
func hostNetWrite(in *instance, mem api.Memory, args []uint64) int32 {
	const fn = abi.FuncNetWrite
	p, ok := guestBytes(mem, arg32(args, 1), arg32(args, 2))
	switch {
	case !ok:
		return in.fail(fn, abi.ErrBadPointer)
	case len(p) > abi.MaxFrame:
		return in.fail(fn, abi.ErrTooLarge)
	case in.sockets == nil:
		return in.fail(fn, abi.ErrNotFound)
	}
	if err := in.sockets.Write(in.ctx, int32(arg32(args, 0)), p); err != nil {
		return in.failErr(fn, err)
	}
	return 0
}

// hostNetClose: net_close_stream(stream) -> 0 or errno.
func hostNetClose(in *instance, _ api.Memory, args []uint64) int32 {
	if in.sockets == nil {
		return in.fail(abi.FuncNetClose, abi.ErrNotFound)
	}
	if err := in.sockets.CloseStream(int32(arg32(args, 0))); err != nil {
		return in.failErr(abi.FuncNetClose, err)
	}
	return 0
}

// hostNetWait: net_wait(timeout_ms, ev_ptr, ev_cap) -> record count.
// ev_cap counts records of abi.ReadyRecordSize bytes; at most maxReady are
// written per call.
func hostNetWait(in *instance, mem api.Memory, args []uint64) int32 {
	const fn = abi.FuncNetWait
	timeoutMS, ptr, capRecs := int32(arg32(args, 0)), arg32(args, 1), arg32(args, 2)
	if capRecs == 0 {
		return in.fail(fn, abi.ErrInvalid)
	}
	// The whole buffer the guest claims must be in memory, even though at
	// most maxReady records are written.
	if uint64(ptr)+uint64(capRecs)*abi.ReadyRecordSize > uint64(mem.Size()) {
		return in.fail(fn, abi.ErrBadPointer)
	}
	out, ok := guestBytes(mem, ptr, capRecs*abi.ReadyRecordSize)
	if !ok {
		return in.fail(fn, abi.ErrBadPointer)
	}

	timeout := time.Duration(-1)
	if timeoutMS >= 0 {
		timeout = time.Duration(timeoutMS) * time.Millisecond
	}
	if in.sockets == nil {
		return in.waitNothing(timeout)
	}

	recs := in.ready[:min(int(capRecs), len(in.ready))]
	n, err := in.sockets.Wait(in.ctx, timeout, recs)
	if err != nil {
		return in.failErr(fn, err)
	}
	n = min(n, len(recs))
	for i, r := range recs[:n] {
		binary.LittleEndian.PutUint32(out[i*abi.ReadyRecordSize:], uint32(r.Handle))
		binary.LittleEndian.PutUint32(out[i*abi.ReadyRecordSize+4:], r.Kind)
	}
	return int32(n)
}

// waitNothing is net_wait for an instance without sockets: nothing can
// become ready, so it waits for the timeout or the unload. This lets a
// capsule without net_bind park in net_wait until it is unloaded.
func (in *instance) waitNothing(timeout time.Duration) int32 {
	if timeout == 0 {
		return 0
	}
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-tc:
		return 0
	case <-in.ctx.Done():
		return in.fail(abi.FuncNetWait, abi.ErrUnloading)
	}
}
