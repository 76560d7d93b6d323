package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// retryPause is the pause between attempts to reach an external server
// during Start.
const retryPause = 100 * time.Millisecond

// connectEmbedded opens the node's own connection to its embedded server
// in-process: no TCP, and it works without a client listener.
func connectEmbedded(s *server.Server, id string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(s),
		nats.Name("astrid-node "+id),
		nats.ErrorHandler(asyncErrHandler(log)),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to the embedded NATS server: %w", err)
	}
	return nc, nil
}

// connectExternal connects to cfg.NATSURL, retrying until cfg.ConnectWait
// has passed so a node may start alongside its server. Once connected it
// reconnects forever and buffers publishes meanwhile.
func connectExternal(ctx context.Context, cfg Config, id string,
	log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("astrid-node " + id),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(reconnectBuf),
		nats.RetryOnFailedConnect(false),
		nats.ErrorHandler(asyncErrHandler(log)),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// err is nil when the node closes the connection itself, at
			// shutdown: nothing is lost then.
			if err != nil {
				log.Warn("NATS connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connection restored", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Error("NATS connection closed", "err", err)
			}
		}),
	}
	if cfg.ReconnectWait > 0 {
		opts = append(opts, nats.ReconnectWait(cfg.ReconnectWait))
	}
	if cfg.NATSUser != "" || cfg.NATSPassword != "" {
		opts = append(opts, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword))
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}

	log.Info("connecting to NATS", "url", redactURLs(cfg.NATSURL), "wait", cfg.ConnectWait)
	deadline := time.Now().Add(cfg.ConnectWait)
	for {
		remaining := time.Until(deadline)
		nc, err := nats.Connect(cfg.NATSURL,
			append(opts, nats.Timeout(max(remaining, 50*time.Millisecond)))...)
		if err == nil {
			return nc, nil
		}
		// Wrong credentials do not get better by waiting.
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
			strings.Contains(strings.ToLower(err.Error()), "authorization") {
			return nil, fmt.Errorf("NATS at %s refused the node: %w", redactURLs(cfg.NATSURL), err)
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("cannot reach NATS at %s within %v: %w",
				redactURLs(cfg.NATSURL), cfg.ConnectWait, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to NATS at %s: %w",
				redactURLs(cfg.NATSURL), ctx.Err())
		case <-time.After(min(retryPause, time.Until(deadline))):
		}
	}
}

// asyncErrHandler logs errors nats.go reports outside any call, such as a
// slow consumer or a permission violation.
func asyncErrHandler(log *slog.Logger) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			log.Error("NATS error", "subject", sub.Subject, "err", err)
			return
		}
		log.Error("NATS error", "err", err)
	}
}

// redactURLs hides any password in a comma-separated URL list.
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := parseNATSURL(p)
		if err != nil {
			parts[i] = "<unparsable URL>"
			continue
		}
		// A user name alone may be a token, so the whole user part goes.
		if u.User != nil {
			u.User = url.User("REDACTED")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// parseNATSURL parses one server URL the way nats.go reads it: a bare
// HOST:PORT means nats://HOST:PORT.
func parseNATSURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, redactErr(err)
	}
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	return u, nil
}
