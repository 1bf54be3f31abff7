// Package agent wires a Strata node: the embedded containerd (a supervised
// child process of this binary), the upstream kubelet in-process, the pause
// image built by Strata itself, and the node's pod network. It runs inside
// `strata server` unless --disable-agent, or alone as `strata agent`.
package agent

import (
	"context"
	"errors"
	"fmt"
	"github.com/strata-cloud/strata/internal/storage/ociimage"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/strata-cloud/strata/internal/agent/containerd"
	"github.com/strata-cloud/strata/internal/agent/deviceplugin"
	"github.com/strata-cloud/strata/internal/kube"
	"github.com/strata-cloud/strata/internal/storage/volume"
)

// Config is everything a node agent is told.
type Config struct {
	DataDir    string // the agent's own directory
	NodeName   string
	NodeIP     net.IP
	Binary     string // this executable: containerd, its shim and the CNI plugin
	RuncBinary string
	Kubeconfig string // node credentials (system:node:<name>)
	// BootstrapKubeconfig joins with a bootstrap token (see Discover).
	BootstrapKubeconfig string
	ClientCAFile        string // the cluster CA: authenticates callers of the kubelet API
	ClusterDNS          string
	ClusterCIDR         string // runs kube-proxy for Services when set
	ClusterDomain       string
	CgroupRoot          string
	Logger              *slog.Logger

	// Network runs the node's pod network for as long as the agent runs
	// (CNI configuration, overlay); nil leaves it to someone else.
	Network func(ctx context.Context, paths containerd.Paths) error
	// Images are loaded into containerd before the kubelet starts (the
	// pause image first); each is a docker or OCI archive.
	Images []ImageSource
	// LateImages are loaded beside the kubelet's start (the VM launcher
	// image: large, and needed by no system pod).
	LateImages []ImageSource
	// Mirror is Strata's registry, which containerd asks first for every
	// image; a zero Mirror pulls from each image's own registry only.
	Mirror containerd.Mirror
	// KubeletAfter, when set, holds the kubelet back until it is closed.
	// A server's own node waits for its controller-manager: upstream's
	// CSI volume plugin keeps its node-info manager in a package variable
	// that every Init replaces, and the controller-manager's volume
	// controllers Init it with no node name. Initialized after the
	// kubelet's, it leaves the kubelet unable to write its CSINode
	// ("resource name may not be empty") and the node never Ready.
	KubeletAfter <-chan struct{}
}

// ImageSource produces an image archive.
type ImageSource struct {
	Name  string
	Write func(w *os.File) error
}

// PauseImage is the sandbox image the kubelet's pods use, built locally.
const PauseImage = ociimage.PauseRef

// Run runs the node until ctx is done. Containers keep running when it
// stops: their shims outlive containerd and the agent.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if err := EnsureCgroupRoot(cfg.CgroupRoot); err != nil {
		return err
	}
	paths := containerd.NewPaths(cfg.DataDir)
	shim, err := containerd.InstallShim(paths, cfg.Binary)
	if err != nil {
		return err
	}
	if err := containerd.WriteConfig(containerd.ConfigOptions{
		Paths: paths, ShimBinary: shim, RuncBinary: cfg.RuncBinary, PauseImage: PauseImage, Mirror: cfg.Mirror,
	}); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(paths.Dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan struct{})
	wg.Go(func() {
		_ = containerd.Supervise(ctx, log, cfg.Binary, shim, paths, logFile, ready)
	})
	select {
	case <-ready:
	case <-ctx.Done():
		return nil
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("containerd did not start in 2 minutes; see %s", logFile.Name())
	}
	for _, img := range cfg.Images {
		if err := importImage(ctx, paths, img); err != nil {
			return err
		}
	}
	wg.Go(func() {
		for _, img := range cfg.LateImages {
			began := time.Now()
			if err := importImage(ctx, paths, img); err != nil {
				if ctx.Err() == nil {
					log.Warn("loading an image failed; pods that need it will not start", "image", img.Name, "err", err)
				}
				continue
			}
			log.Debug("image loaded", "image", img.Name, "elapsed", time.Since(began).Round(time.Millisecond))
		}
	})
	// The network waits for the kubelet to register the node and the
	// controller-manager to give it a pod range, so it runs beside it.
	networkErr := make(chan error, 2)
	if cfg.Network != nil {
		wg.Go(func() {
			if err := cfg.Network(ctx, paths); err != nil && ctx.Err() == nil {
				networkErr <- fmt.Errorf("pod network: %w", err)
				cancel()
			}
		})
	}
	if cfg.ClusterCIDR != "" {
		wg.Go(func() {
			// A joining node's credentials appear once its CSR is approved.
			if _, err := nodeClient(ctx, cfg.Kubeconfig); err != nil {
				return
			}
			err := kube.RunProxy(ctx, kube.ProxyConfig{NodeName: cfg.NodeName, Kubeconfig: cfg.Kubeconfig, ClusterCIDR: cfg.ClusterCIDR}.Args())
			if err != nil && ctx.Err() == nil {
				networkErr <- fmt.Errorf("kube-proxy: %w", err)
				cancel()
			}
		})
	}
	kubeletRoot := filepath.Join(cfg.DataDir, "kubelet")
	wg.Go(func() {
		// /dev/net/tun for VM launcher pods (their taps), unprivileged.
		if err := deviceplugin.Serve(ctx, log, kubeletRoot, deviceplugin.Tun); err != nil {
			log.Warn("device plugin stopped; VMs cannot start on this node", "resource", deviceplugin.Tun.Resource, "err", err)
		}
	})
	// Volumes (storage.strata.io) held by this node: files, loop devices;
	// shown at the path every VM launcher pod mounts, before any starts.
	if err := volume.BindNodeDir(cfg.DataDir); err != nil {
		return fmt.Errorf("volumes for VMs: %w", err)
	}
	wg.Go(func() { RunVolumes(ctx, cfg) })
	if err := waitForCRI(ctx, paths.Socket(), 2*time.Minute); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w; see %s", err, logFile.Name())
	}
	if cfg.KubeletAfter != nil {
		select {
		case <-cfg.KubeletAfter:
		case <-ctx.Done():
			return nil
		}
	}
	err = kube.RunKubelet(ctx, kube.KubeletConfig{
		NodeName:            cfg.NodeName,
		NodeIP:              cfg.NodeIP.String(),
		Kubeconfig:          cfg.Kubeconfig,
		BootstrapKubeconfig: cfg.BootstrapKubeconfig,
		RootDir:             kubeletRoot,
		PodLogsDir:          filepath.Join(cfg.DataDir, "pod-logs"),
		CertDir:             filepath.Join(cfg.DataDir, "kubelet", "pki"),
		ClientCAFile:        cfg.ClientCAFile,
		RuntimeEndpoint:     "unix://" + paths.Socket(),
		ClusterDNS:          []string{cfg.ClusterDNS},
		ClusterDomain:       cfg.ClusterDomain,
		ResolvConf:          "/etc/resolv.conf",
		CgroupRoot:          cfg.CgroupRoot,
		Port:                10250,
	})
	select {
	case nerr := <-networkErr:
		return nerr
	default:
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func importImage(ctx context.Context, paths containerd.Paths, img ImageSource) error {
	f, err := os.CreateTemp(paths.Dir, "image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := img.Write(f); err != nil {
		return fmt.Errorf("build image %s: %w", img.Name, err)
	}
	// Read back by name: the writer may have replaced the file.
	archive, err := os.Open(f.Name())
	if err != nil {
		return err
	}
	defer archive.Close()
	if _, err := containerd.ImportImage(ctx, paths.Socket(), archive); err != nil {
		return fmt.Errorf("load image %s: %w", img.Name, err)
	}
	return nil
}
