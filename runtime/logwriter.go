package runtime

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
)

// maxLogLine bounds one line of guest stdout/stderr; longer lines are
// split, so a guest that never writes a newline cannot grow host memory.
const maxLogLine = 4096

// lineWriter turns a guest's stdout or stderr into slog records, one per
// line.
type lineWriter struct {
	log   *slog.Logger
	level slog.Level
	fd    string

	mu  sync.Mutex
	buf []byte // guarded by mu; the unfinished line
}

func newLineWriter(log *slog.Logger, level slog.Level, fd string) *lineWriter {
	return &lineWriter{log: log, level: level, fd: fd}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()

	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLogLine - len(w.buf)
			if len(p) < room {
				w.buf = append(w.buf, p...)
				return n, nil
			}
			w.buf = append(w.buf, p[:room]...)
			p = p[room:]
			w.emitLocked()
			continue
		}
		line := p[:i]
		p = p[i+1:]
		for len(w.buf)+len(line) > maxLogLine {
			room := maxLogLine - len(w.buf)
			w.buf = append(w.buf, line[:room]...)
			line = line[room:]
			w.emitLocked()
		}
		w.buf = append(w.buf, line...)
		w.emitLocked()
	}
	return n, nil
}

// Flush emits an unfinished last line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emitLocked()
	}
}

func (w *lineWriter) emitLocked() {
	w.log.Log(context.Background(), w.level, string(bytes.ToValidUTF8(w.buf, []byte("?"))),
		"fd", w.fd)
	w.buf = w.buf[:0]
}
