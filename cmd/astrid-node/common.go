package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

// natsAuth is how a command authenticates to NATS: --nats-user with
// --nats-password (or ASTRID_NATS_PASSWORD, which stays out of ps), or
// --nats-creds. run, ctl and idle share it, so the rules are the same.
type natsAuth struct {
	user, password, creds string
}

// register adds the three flags to fs.
func (a *natsAuth) register(fs *flag.FlagSet) {
	fs.StringVar(&a.user, "nats-user", "", "NATS user name")
	// The environment is read by resolve, not as the flag default, so
	// that -h never prints the password.
	fs.StringVar(&a.password, "nats-password", "",
		"NATS password for --nats-user (or env ASTRID_NATS_PASSWORD, which stays out of ps)")
	fs.StringVar(&a.creds, "nats-creds", "", "NATS credentials file")
}

// resolve takes the environment's password for a user named by flag (alone
// it would be sent as an anonymous password and refused) and checks that
// the flags go together.
func (a *natsAuth) resolve() error {
	if a.password == "" && a.user != "" {
		a.password = os.Getenv("ASTRID_NATS_PASSWORD")
	}
	switch {
	case a.password != "" && a.user == "":
		return errors.New("--nats-password needs --nats-user")
	case a.creds != "" && a.user != "":
		return errors.New("--nats-creds and --nats-user exclude each other")
	}
	return nil
}

// options are the nats.go options for these credentials.
func (a natsAuth) options() []nats.Option {
	var opts []nats.Option
	if a.user != "" {
		opts = append(opts, nats.UserInfo(a.user, a.password))
	}
	if a.creds != "" {
		opts = append(opts, nats.UserCredentials(a.creds))
	}
	return opts
}

// dialNATS connects a client subcommand to NATS, failing after timeout
// with a one-line error when the server cannot be reached.
func dialNATS(url string, auth natsAuth, timeout time.Duration,
	name string) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.Name(name), nats.Timeout(timeout)}, auth.options()...)
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

// logFlags are the --log-format and --log-level flags of the commands that
// log (run, idle).
type logFlags struct {
	format, levelText string
	level             slog.Level
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format on stderr: text or json")
	fs.StringVar(&l.levelText, "log-level", "info", "log level: debug, info, warn or error")
}

// resolve checks the flags after parsing.
func (l *logFlags) resolve() error {
	switch l.format {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: want text or json", l.format)
	}
	if err := l.level.UnmarshalText([]byte(l.levelText)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", l.levelText)
	}
	return nil
}

// logger is the slog logger on w that the flags ask for.
func (l logFlags) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.level}
	if l.format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
