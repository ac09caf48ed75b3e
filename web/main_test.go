package web_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: a node
// of internal/apitest must stop everything it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
