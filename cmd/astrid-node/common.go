package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

// dialNATS connects a client subcommand to NATS, failing after timeout
// with a one-line error when the server cannot be reached.
func dialNATS(url, user, pass, creds string, timeout time.Duration,
	name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(timeout)}
	if user != "" || pass != "" {
		opts = append(opts, nats.UserInfo(user, pass))
	}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		// The URL may carry a user and password: never print them.
		return nil, fmt.Errorf("cannot reach NATS at %s: %w", redactURL(url), err)
	}
	return nc, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func exitUsage(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

func joinArgs(a []string) string {
	b, _ := json.Marshal(a)
	return string(b)
}
