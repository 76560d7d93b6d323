package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/astrid-os/astrid-node/events"
)

// ListenNone as Config.NATSListen starts the embedded server without a TCP
// client listener: only in-process connections reach it.
const ListenNone = "none"

// Defaults applied by Start to zero fields of Config.
const (
	DefaultNATSListen  = "127.0.0.1:4222"
	DefaultHeartbeat   = 5 * time.Second
	DefaultConnectWait = 5 * time.Second
	DefaultClusterName = "astrid"

	// reconnectBuf is how much a node connected to an external server
	// buffers while it reconnects; events beyond it are lost (and logged).
	reconnectBuf = 8 << 20
)

// ErrConfig is wrapped by every error that comes from a bad Config rather
// than from the environment, so a command can tell usage errors apart.
var ErrConfig = errors.New("invalid node configuration")

// Config describes one node. The zero value of every field but Home has a
// sensible default.
type Config struct {
	// Home is the node's state directory ($ASTRID_HOME). Start creates it
	// and its private run/ directory (0700).
	Home string

	// NodeID names the node on every event and control subject. Empty:
	// read Home/node.id, or generate one and persist it there.
	NodeID string

	// NATSListen is the embedded server's client listener, HOST:PORT
	// (port 0 picks a free one) or ListenNone.
	NATSListen string

	// NATSURL connects the node to an existing NATS server or cluster
	// instead of starting one. NATSUser/NATSPassword or NATSCreds (a
	// creds file path) authenticate it.
	NATSURL      string
	NATSUser     string
	NATSPassword string
	NATSCreds    string

	// ClusterListen (HOST:PORT) makes the embedded server accept routes
	// from other nodes; Routes are the nats://HOST:PORT routes it
	// solicits. ClusterName defaults to DefaultClusterName.
	ClusterListen string
	Routes        []string
	ClusterName   string

	// Heartbeat is the node.v1.heartbeat interval.
	Heartbeat time.Duration

	// ConnectWait bounds how long Start keeps trying an unreachable
	// NATSURL.
	ConnectWait time.Duration

	// ReconnectWait is the pause between reconnect attempts to NATSURL
	// (0: the nats.go default).
	ReconnectWait time.Duration

	Logger *slog.Logger

	// Instances supplies the heartbeat's instance list; nil sends an
	// empty list. It is called from the heartbeat goroutine.
	Instances func() []events.InstanceStatus
}

// withDefaults returns cfg with its zero fields filled in, or an error
// wrapping ErrConfig.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Home == "" {
		return cfg, fmt.Errorf("%w: home directory is required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Heartbeat < 0 {
		return cfg, fmt.Errorf("%w: heartbeat interval %v is negative", ErrConfig, cfg.Heartbeat)
	}
	if cfg.ConnectWait == 0 {
		cfg.ConnectWait = DefaultConnectWait
	}
	if cfg.ConnectWait < 0 {
		return cfg, fmt.Errorf("%w: connect wait %v is negative", ErrConfig, cfg.ConnectWait)
	}
	if cfg.NodeID != "" {
		if err := validNodeID(cfg.NodeID); err != nil {
			return cfg, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}

	if cfg.NATSURL != "" {
		return cfg, cfg.checkExternal()
	}
	return cfg, cfg.checkEmbedded()
}

func (cfg *Config) checkExternal() error {
	if cfg.ClusterListen != "" || len(cfg.Routes) > 0 {
		return fmt.Errorf("%w: cluster options need the embedded server; "+
			"they cannot be combined with a NATS URL", ErrConfig)
	}
	if cfg.NATSCreds != "" && cfg.NATSUser != "" {
		return fmt.Errorf("%w: use either a creds file or a user, not both", ErrConfig)
	}
	for _, u := range strings.Split(cfg.NATSURL, ",") {
		if _, err := parseNATSURL(u); err != nil {
			return fmt.Errorf("%w: NATS URL: %v", ErrConfig, err)
		}
	}
	return nil
}

func (cfg *Config) checkEmbedded() error {
	if cfg.NATSUser != "" || cfg.NATSPassword != "" || cfg.NATSCreds != "" {
		return fmt.Errorf("%w: NATS credentials apply only with a NATS URL", ErrConfig)
	}
	if cfg.NATSListen == "" {
		cfg.NATSListen = DefaultNATSListen
	}
	if cfg.NATSListen != ListenNone {
		if _, _, err := splitHostPort(cfg.NATSListen); err != nil {
			return fmt.Errorf("%w: NATS listen address: %v", ErrConfig, err)
		}
	}

	if cfg.ClusterListen == "" {
		if len(cfg.Routes) > 0 {
			return fmt.Errorf("%w: routes need a cluster listen address", ErrConfig)
		}
		return nil
	}
	// A server without a client listener never forms routes and hangs
	// in Shutdown, so a clustered node must listen for clients.
	if cfg.NATSListen == ListenNone {
		return fmt.Errorf("%w: a cluster listen address needs a client listener", ErrConfig)
	}
	if _, _, err := splitHostPort(cfg.ClusterListen); err != nil {
		return fmt.Errorf("%w: cluster listen address: %v", ErrConfig, err)
	}
	for _, r := range cfg.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats" || u.Port() == "" {
			return fmt.Errorf("%w: route %q: want nats://HOST:PORT", ErrConfig, r)
		}
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = DefaultClusterName
	}
	return nil
}

// splitHostPort parses HOST:PORT. Port 0 becomes -1, which nats-server
// reads as "pick a free port".
func splitHostPort(hp string) (string, int, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}

// redactErr drops the text of a URL parse error, which quotes the URL and
// so any password in it.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
