// Package e2e holds Strata's black-box end-to-end tests: they start the
// built bin/strata as real processes (see internal/testenv) and drive them
// with the real kubectl and the strata command line, as users do.
//
// Most tests share one server, each in its own namespace; tests that kill,
// restart or misconfigure a server start their own. Run them with
// `make test-e2e` (as root, on Linux).
package e2e
