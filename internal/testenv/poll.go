package testenv

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually retries.
const PollInterval = 250 * time.Millisecond

// Eventually calls fn until it returns nil, failing t with fn's last error
// if that does not happen within timeout.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", timeout, err)
		}
		time.Sleep(PollInterval)
	}
}
