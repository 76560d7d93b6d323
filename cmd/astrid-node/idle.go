package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/astrid-os/astrid-node/control"
	"github.com/astrid-os/astrid-node/idle"
)

const idleUsage = `usage: astrid-node idle [flags]

Runs a standalone idle monitor. It follows the nodes' events on NATS and
asks a node to unload a capsule instance that has had no stream for the
capsule's idle timeout. SIGINT or SIGTERM stops it.

flags:
`

// idleOptions is what `astrid-node idle` was asked to do.
type idleOptions struct {
	url            string
	auth           natsAuth
	node           string
	idleTimeout    time.Duration
	requestTimeout time.Duration
	connectTimeout time.Duration
	log            logFlags
}

func cmdIdle(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return runIdle(ctx, args, stdout, stderr)
}

// runIdle is cmdIdle until ctx is done.
func runIdle(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseIdleFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "astrid-node idle: %v (see astrid-node idle -h)\n", err)
		return 2
	}
	log := opts.log.logger(stderr)

	nc, err := dialIdleNATS(opts, log)
	if err != nil {
		fmt.Fprintf(stderr, "astrid-node idle: %v\n", err)
		return 1
	}
	defer nc.Close()

	m, err := idle.New(idle.Config{
		Conn:           nc,
		Logger:         log,
		DefaultIdle:    opts.idleTimeout,
		RequestTimeout: opts.requestTimeout,
		Node:           opts.node,
	})
	if err != nil {
		fmt.Fprintf(stderr, "astrid-node idle: %v\n", err)
		return 2
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "astrid-node idle: %v\n", err)
		return 1
	}
	return 0
}

func parseIdleFlags(args []string, stdout io.Writer) (idleOptions, error) {
	var o idleOptions
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	// The caller prints a parse error in one line; only -h prints the
	// usage, to stdout.
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.url, "nats-url", envOr("NATS_URL", nats.DefaultURL),
		"NATS server(s) the nodes publish to, comma-separated (env NATS_URL)")
	o.auth.register(fs)
	fs.StringVar(&o.node, "node", "", "watch only this node's instances (default: all nodes)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", idle.DefaultIdle,
		"idle timeout of an instance whose node has not told its own")
	fs.DurationVar(&o.requestTimeout, "request-timeout", idle.DefaultRequestTimeout,
		"how long to wait for a node to answer an unload request")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 5*time.Second,
		"how long to try to reach NATS at start")
	o.log.register(fs)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, idleUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := o.log.resolve(); err != nil {
		return o, err
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"--idle-timeout", o.idleTimeout},
		{"--request-timeout", o.requestTimeout},
		{"--connect-timeout", o.connectTimeout},
	} {
		if d.d <= 0 {
			return o, fmt.Errorf("%s %v: must be positive", d.name, d.d)
		}
	}
	if err := o.auth.resolve(); err != nil {
		return o, err
	}
	if o.node != "" {
		if err := control.ValidNodeID(o.node); err != nil {
			return o, fmt.Errorf("--node: %w", err)
		}
	}
	if strings.TrimSpace(o.url) == "" {
		return o, errors.New("--nats-url is empty")
	}
	return o, nil
}

// dialIdleNATS connects, giving up after --connect-timeout with a one-line
// error. Once connected it reconnects for ever: a monitor that lost NATS
// for a while catches up from the nodes' next heartbeats.
func dialIdleNATS(o idleOptions, log *slog.Logger) (*nats.Conn, error) {
	nopts := []nats.Option{
		nats.Name("astrid-node idle"),
		nats.Timeout(o.connectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "server", redactURL(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("NATS error", "subject", subject, "err", err)
		}),
	}
	nopts = append(nopts, o.auth.options()...)

	// nats.Connect tries each server once, each dial bounded by Timeout;
	// the deadline also bounds a server that accepts but never answers.
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(o.url, nopts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("cannot reach NATS at %s: %w", redactURL(o.url), r.err)
		}
		return r.nc, nil
	case <-time.After(o.connectTimeout + time.Second):
		// Close the connection should it come up after all.
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("cannot reach NATS at %s: no answer within %v",
			redactURL(o.url), o.connectTimeout)
	}
}

// redactURL hides the credentials in a comma-separated list of NATS URLs.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			// An unparsable URL may still hold a secret: show no part of it
			// after the scheme.
			if j := strings.Index(p, "://"); j >= 0 && strings.Contains(p, "@") {
				parts[i] = p[:j+3] + "[redacted]"
			}
			continue
		}
		// A user name alone may be a token, so the whole user part goes.
		if u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
