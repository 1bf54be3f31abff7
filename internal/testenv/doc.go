// Package testenv runs Strata as real processes for black-box tests: it
// starts `bin/strata server` on free loopback ports with its own data
// directory, waits until it is ready, stops, kills and restarts it, and runs
// the real kubectl against it with a fresh cache per test.
//
// Nothing here links the Kubernetes tree: tests drive the built binary and
// the command-line tools users run, so they exercise what users get.
//
// The harness needs Linux and root (the server will run node components).
// Outside CI a test that cannot run is skipped; in CI (CI=true) it fails, so
// that a misconfigured CI machine never passes by skipping everything.
package testenv
