package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// serverReadyWait bounds how long Start waits for the embedded server's
// listeners.
const serverReadyWait = 10 * time.Second

// startServer starts the embedded nats-server described by cfg, named id,
// and waits until it accepts connections.
func startServer(ctx context.Context, cfg Config, id string,
	log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: id,
		NoSigs:     true,
		NoLog:      false,
		JetStream:  false,
	}
	if cfg.NATSListen == ListenNone {
		opts.DontListen = true
	} else {
		host, port, _ := splitHostPort(cfg.NATSListen) // checked in withDefaults
		opts.Host, opts.Port = host, port
	}
	if cfg.ClusterListen != "" {
		host, port, _ := splitHostPort(cfg.ClusterListen)
		opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: port}
		for _, r := range cfg.Routes {
			u, _ := url.Parse(r)
			opts.Routes = append(opts.Routes, u)
		}
	}

	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configuring NATS server: %w", err)
	}
	sl := newServerLogger(log)
	s.SetLoggerV2(sl, log.Enabled(ctx, slog.LevelDebug), log.Enabled(ctx, levelTrace), false)
	s.Start()

	// Poll in short steps so that a listener failure, which nats-server
	// reports through Fatalf, ends the wait at once.
	deadline := time.Now().Add(serverReadyWait)
	for !s.ReadyForConnections(20 * time.Millisecond) {
		select {
		case msg := <-sl.fatal:
			stopServer(s)
			return nil, fmt.Errorf("starting NATS server: %s", listenHint(msg))
		case <-ctx.Done():
			stopServer(s)
			return nil, fmt.Errorf("starting NATS server: %w", ctx.Err())
		default:
		}
		if time.Now().After(deadline) {
			stopServer(s)
			return nil, fmt.Errorf("NATS server not ready after %v", serverReadyWait)
		}
	}
	return s, nil
}

func stopServer(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// listenHint makes nats-server's listener failure read as what the user
// needs to fix.
func listenHint(msg string) string {
	if strings.Contains(msg, "Error listening") {
		return msg + " (is another process using the port?)"
	}
	return msg
}

// embeddedClientURL is the URL a client such as the nats CLI uses to reach
// the embedded server; an unspecified host becomes loopback.
func embeddedClientURL(s *server.Server) string {
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok || addr == nil {
		return ""
	}
	ip := addr.IP
	if ip.IsUnspecified() {
		if ip.To4() != nil {
			ip = net.IPv4(127, 0, 0, 1)
		} else {
			ip = net.IPv6loopback
		}
	}
	return "nats://" + net.JoinHostPort(ip.String(), fmt.Sprint(addr.Port))
}
