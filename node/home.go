package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/uuid"
)

// Files under Home and its run directory.
const (
	RunDirName = "run"
	NodeIDFile = "node.id"
	ReadyFile  = "node.ready"
	lockFile   = "node.lock"
)

// maxNodeID bounds a node id: it appears in subjects and headers.
const maxNodeID = 64

// prepareHome creates home and home/run, makes run private (0700) and
// checks that the node can write there.
func prepareHome(home string) (string, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", fmt.Errorf("home %s: %w", home, unwrapPath(err))
	}
	run := filepath.Join(home, RunDirName)
	if err := os.Mkdir(run, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("home %s is not writable: %w", home, unwrapPath(err))
	}

	fi, err := os.Lstat(run)
	if err != nil {
		return "", fmt.Errorf("run directory: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("run directory %s is not a directory", run)
	}
	// Sockets and the ready file live here: nobody else may look in.
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(run, 0o700); err != nil {
			return "", fmt.Errorf("making %s private: %w", run, unwrapPath(err))
		}
	}

	probe, err := os.CreateTemp(run, ".probe-*")
	if err != nil {
		return "", fmt.Errorf("run directory %s is not writable: %w", run, unwrapPath(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	return run, nil
}

// lockRun takes an exclusive lock on run/node.lock so that two nodes never
// share a home. The lock goes with the process, so a crashed node leaves
// nothing stale behind.
func lockRun(run string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(run, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening node lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another node is running with home %s",
				filepath.Dir(run))
		}
		return nil, fmt.Errorf("locking %s: %w", run, err)
	}
	return f, nil
}

// loadNodeID returns the configured id, else the one persisted in
// home/node.id, else a new one that it persists (0600).
func loadNodeID(home, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	path := filepath.Join(home, NodeIDFile)
	data, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if err := validNodeID(id); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading node id: %w", err)
	}

	id := uuid.NewString()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("persisting node id: %w", unwrapPath(err))
	}
	_, err = f.WriteString(id + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("persisting node id: %w", err)
	}
	return id, nil
}

// validNodeID accepts ids that are one NATS subject token and a server
// name: letters, digits, '-' and '_', at most maxNodeID bytes.
func validNodeID(id string) error {
	if id == "" || len(id) > maxNodeID {
		return fmt.Errorf("node id must be 1 to %d characters", maxNodeID)
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_'
		if !ok {
			return fmt.Errorf("node id %q: only letters, digits, '-' and '_' are allowed", id)
		}
	}
	return nil
}

// unwrapPath keeps the cause of a PathError; callers already name the path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
