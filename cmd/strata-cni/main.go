// Command strata-cni is Strata's CNI plugin (and, run as "loopback", the
// loopback plugin) on its own: `make build` embeds it in strata, which
// installs it into each node's CNI directory (see internal/agent/helperbin).
package main

import (
	"fmt"
	"os"

	"github.com/strata-cloud/strata/internal/network/cni"
)

func main() {
	code, ok := cni.MultiCall(os.Args)
	if !ok {
		fmt.Fprintf(os.Stderr, "run me as %s or %s (CNI plugins, started by the container runtime)\n", cni.PluginType, cni.LoopbackType)
		os.Exit(2)
	}
	os.Exit(code)
}
