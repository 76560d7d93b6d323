// Package poll waits in tests for conditions that become true eventually:
// it checks, sleeps a little, and fails the test at a deadline, so no test
// waits on a bare sleep.
package poll

import (
	"testing"
	"time"
)

// interval is the pause between checks: short against the hundreds of
// milliseconds tests wait for, long enough not to spin.
const interval = 5 * time.Millisecond

// Until calls cond until it returns true, and fails tb if within passes
// first. what names the condition in the failure.
func Until(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(interval)
	}
}
