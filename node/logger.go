package node

import (
	"context"
	"fmt"
	"log/slog"
)

// levelTrace is the slog level at which nats-server's protocol trace is
// switched on; it is below Debug because the trace is very chatty.
const levelTrace = slog.LevelDebug - 4

// serverLogger adapts slog to nats-server's Logger. Fatalf never exits the
// process: it logs at error level and reports the failure on fatal, so
// Start can fail with the server's own reason.
type serverLogger struct {
	log   *slog.Logger
	fatal chan string // buffered; the first fatal message wins
}

func newServerLogger(log *slog.Logger) *serverLogger {
	return &serverLogger{
		log:   log.With("component", "nats-server"),
		fatal: make(chan string, 1),
	}
}

func (l *serverLogger) logf(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, v...))
}

func (l *serverLogger) Noticef(format string, v ...any) { l.logf(slog.LevelInfo, format, v) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.logf(slog.LevelWarn, format, v) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.logf(slog.LevelError, format, v) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.logf(slog.LevelDebug, format, v) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.logf(levelTrace, format, v) }

func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, "fatal", true)
	select {
	case l.fatal <- msg:
	default:
	}
}
