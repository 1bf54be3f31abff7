package testenv

import (
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Eventually retries.
const PollInterval = 250 * time.Millisecond

// Eventually calls fn until it returns nil, failing t with fn's last error
// if that does not happen within timeout.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	if err := EventuallyErr(timeout, fn); err != nil {
		t.Fatal(err)
	}
}

// EventuallyErr calls fn until it returns nil and returns nil, or fn's
// last error once timeout has passed (for checks that must not stop the
// test).
func EventuallyErr(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		time.Sleep(PollInterval)
	}
}
