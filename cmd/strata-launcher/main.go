// Command strata-launcher runs one VM: QEMU, driven over QMP, with the
// serial console on stdout. It is the entrypoint of the launcher image
// that each node builds from its QEMU package (internal/vm/launcherimage);
// `make build` also embeds it in strata (internal/agent/helperbin). See
// internal/vm/launcher for the spec, flags and exit codes.
package main

import (
	"os"

	"github.com/strata-cloud/strata/internal/vm/launcher"
)

func main() {
	os.Exit(launcher.Main(os.Args[1:], os.Stdout, os.Stderr))
}
