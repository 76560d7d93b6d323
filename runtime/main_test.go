package runtime

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// instance's guest goroutine, grace timer and wazero watcher must be gone
// after unload and Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
