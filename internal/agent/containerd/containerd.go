// Package containerd embeds containerd 2.x in the strata binary: the daemon
// and its runc shim run as modes of the same executable, the agent renders
// their configuration, supervises the daemon as a child process and loads
// images into it. No system containerd is used or disturbed.
package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task"
	"github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	// The daemon's plugins (CRI, snapshotters, runtimes). The shim's own
	// task plugin is deliberately not imported here: see RunShim.
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
)

// ShimEnv marks a process started by the embedded containerd as its runc
// shim. containerd starts the shim by executing the runtime path (this
// binary) with shim flags, and the shim re-executes os.Executable(), which
// resolves symlinks — so neither argv[0] nor a sub-command can select the
// mode; the environment, inherited from the daemon, does.
const ShimEnv = "STRATA_CONTAINERD_SHIM"

// Namespace is the containerd namespace the CRI plugin (and so the kubelet) uses.
const Namespace = "k8s.io"

// RunDaemon runs containerd with args (as after "containerd" on its own
// command line) until it exits.
func RunDaemon(ctx context.Context, args []string) error {
	return command.App().Run(ctx, append([]string{"containerd"}, args...))
}

// RunShim runs the runc shim (io.containerd.runc.v2). The shim loads every
// registered plugin; in this binary the registry also holds the daemon's
// plugins, which break the shim ("ttrpc: closed"). So the registry is reset
// to the one plugin the upstream shim binary registers — its task service —
// before the shim's own internal plugins are added by RunShim.
func RunShim(ctx context.Context) {
	registry.Reset()
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			return task.NewTaskService(ic.Context, pp.(shim.Publisher), ss.(shutdown.Service))
		},
	})
	shim.RunShim(ctx, manager.NewShimManager("io.containerd.runc.v2"))
}

// Paths are where one node's containerd keeps its files, all under the
// agent's data dir.
type Paths struct {
	Dir      string // config and socket
	Root     string // persistent: content store, snapshots
	State    string // runtime state
	RuncRoot string
	CertsDir string // per-registry hosts.toml (mirrors)
	CNIBin   string
	CNIConf  string
}

// Socket is the gRPC (CRI) socket path.
func (p Paths) Socket() string { return filepath.Join(p.Dir, "containerd.sock") }

// Config is the config file path.
func (p Paths) Config() string { return filepath.Join(p.Dir, "config.toml") }

// NewPaths lays the paths out under dataDir.
func NewPaths(dataDir string) Paths {
	d := filepath.Join(dataDir, "containerd")
	return Paths{
		Dir:      d,
		Root:     filepath.Join(d, "root"),
		State:    filepath.Join(d, "state"),
		RuncRoot: filepath.Join(d, "runc"),
		CertsDir: filepath.Join(d, "certs.d"),
		CNIBin:   filepath.Join(dataDir, "cni", "bin"),
		CNIConf:  filepath.Join(dataDir, "cni", "net.d"),
	}
}

// ConfigOptions are the choices in containerd's configuration.
type ConfigOptions struct {
	Paths
	ShimBinary string // the strata binary, run as the runc shim
	RuncBinary string
	PauseImage string
	// Mirror, when its URL is set, is asked first for every image pull.
	Mirror Mirror
}

// RenderConfig returns containerd's config (version 3) for o.
func RenderConfig(o ConfigOptions) string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by strata on every agent start; edits are overwritten.")
	w("version = 3")
	w("root = %s", q(o.Root))
	w("state = %s", q(o.State))
	// Plugins this node never uses: fewer goroutines, no surprises.
	w(`disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]`)
	w("[grpc]")
	w("  address = %s", q(o.Socket()))
	w("[ttrpc]")
	w("  address = %s", q(o.Socket()+".ttrpc"))
	w("[plugins.'io.containerd.cri.v1.images']")
	w("  snapshotter = 'overlayfs'")
	w("  [plugins.'io.containerd.cri.v1.images'.pinned_images]")
	w("    sandbox = %s", q(o.PauseImage))
	w("  [plugins.'io.containerd.cri.v1.images'.registry]")
	w("    config_path = %s", q(o.CertsDir))
	w("[plugins.'io.containerd.cri.v1.runtime']")
	// No CAP_SYS_RESOURCE on these hosts: negative oom_score_adj is refused.
	w("  restrict_oom_score_adj = true")
	// Pod network namespaces are pinned under the state dir, not in the
	// host's /var/run/netns: a node's sandboxes stay its own.
	w("  netns_mounts_under_state_dir = true")
	w("  [plugins.'io.containerd.cri.v1.runtime'.containerd]")
	w("    default_runtime_name = 'runc'")
	w("    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]")
	w("      runtime_type = 'io.containerd.runc.v2'")
	w("      runtime_path = %s", q(o.ShimBinary))
	w("      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]")
	w("        SystemdCgroup = false")
	w("        BinaryName = %s", q(o.RuncBinary))
	w("        Root = %s", q(o.RuncRoot))
	w("  [plugins.'io.containerd.cri.v1.runtime'.cni]")
	w("    bin_dirs = [%s]", q(o.CNIBin))
	w("    conf_dir = %s", q(o.CNIConf))
	w("    max_conf_num = 1")
	return b.String()
}

// WriteConfig writes the rendered config and the registry hosts, and
// creates the directories.
func WriteConfig(o ConfigOptions) error {
	for _, d := range []string{o.Dir, o.Root, o.State, o.RuncRoot, o.CertsDir, o.CNIBin, o.CNIConf} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if err := WriteHosts(o.CertsDir, o.Mirror); err != nil {
		return err
	}
	return os.WriteFile(o.Config(), []byte(RenderConfig(o)), 0o600)
}

// Mirror is a registry that containerd asks first for every image, whatever
// registry the image's name points to: Strata's own registry.
type Mirror struct {
	// URL is the registry's https:// base URL, e.g. https://10.0.0.1:5000.
	URL string
	// CAFile verifies the registry's serving certificate (the cluster CA).
	CAFile string
}

// defaultHostsDir is the certs.d entry containerd uses for every registry
// that has no directory of its own.
const defaultHostsDir = "_default"

// RenderHosts returns the hosts.toml that puts m in front of every registry.
// It names no `server`, so each registry's own endpoint stays the fallback:
// an image the mirror lacks (404) is pulled from where its name points,
// and fails there as it would without a mirror. The mirror may only pull
// and resolve; pushes never go to it through containerd.
func RenderHosts(m Mirror) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by strata on every agent start; edits are overwritten.")
	w("# Every registry is looked up in Strata's registry first, then at its own address.")
	w("[host.%q]", m.URL)
	w("  capabilities = [\"pull\", \"resolve\"]")
	if m.CAFile != "" {
		w("  ca = %q", m.CAFile)
	}
	return b.String()
}

// WriteHosts writes certsDir/_default/hosts.toml for m, or removes it when
// m has no URL (no mirror: each registry is reached directly).
func WriteHosts(certsDir string, m Mirror) error {
	dir := filepath.Join(certsDir, defaultHostsDir)
	path := filepath.Join(dir, "hosts.toml")
	if m.URL == "" {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(RenderHosts(m)), 0o600)
}
