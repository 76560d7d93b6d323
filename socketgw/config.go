package socketgw

import (
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/astrid-os/astrid-node/abi"
	"github.com/astrid-os/astrid-node/events"
)

// Config configures a Gateway. Zero values take the defaults noted.
type Config struct {
	// RunDir holds the sockets and the token file ($ASTRID_HOME/run). It
	// is created 0700 if missing; an existing one is made 0700. A symlink
	// or a directory owned by another user is refused.
	RunDir string
	Logger *slog.Logger
	// Events publishes client.v1.connected and client.v1.disconnect. Nil
	// publishes nothing (benchmarks only; a node always sets it).
	Events *events.Publisher
	// MaxStreams is the number of open streams per capsule; further
	// authenticated clients wait in the queue. Default 8.
	MaxStreams int
	// HandshakeTimeout bounds each handshake read and write. Default 5s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one frame write to a client. Default 5s.
	WriteTimeout time.Duration
	// MaxFrame is the largest frame a client may send. Default abi.MaxFrame.
	MaxFrame      int
	ServerVersion string
	// AllowedUID is the only uid whose clients are served. 0 means
	// os.Getuid(), which is 0 anyway for a node running as root.
	AllowedUID int
	// OnPending is called, in its own goroutine, when authenticated
	// streams wait for a capsule that has no instance attached (the
	// activation hook). At most one call per capsule runs at a time; it is
	// called again after it returns if streams are still waiting and
	// more arrived meanwhile, and again whenever an instance detaches
	// while streams wait.
	OnPending func(capsule string)
}

// Defaults.
const (
	DefaultMaxStreams       = 8
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultWriteTimeout     = 5 * time.Second
)

// maxHandshakes bounds the handshakes in flight per socket. Further
// connections wait in the kernel's listen backlog, not refused by us.
const maxHandshakes = 64

func (c *Config) setDefaults() error {
	if c.RunDir == "" {
		return errors.New("socketgw: RunDir is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxFrame <= 0 || c.MaxFrame > abi.MaxFrame {
		c.MaxFrame = abi.MaxFrame
	}
	if c.AllowedUID == 0 {
		c.AllowedUID = os.Getuid()
	}
	return nil
}
