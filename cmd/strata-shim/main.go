// Command strata-shim is containerd's runc shim (io.containerd.runc.v2) on
// its own, without the rest of Strata. `make build` compiles it first and
// embeds it in the strata binary (internal/agent/containerd/shimbin), which
// writes it under the agent's data dir and points containerd at it: every
// pod has a shim process, and a small one costs a few MB where a copy of
// the whole strata binary (all of Kubernetes' package initialisation) cost
// tens. Without the embedded shim, strata runs as its own shim.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
	"github.com/containerd/containerd/v2/pkg/shim"
)

func main() {
	shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
}
