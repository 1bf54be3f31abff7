package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strata-cloud/strata/internal/agent/containerd"
	"github.com/strata-cloud/strata/internal/agent/helperbin"
	"github.com/strata-cloud/strata/internal/agent/vmhandler"
	"github.com/strata-cloud/strata/internal/network/bridge"
	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/dns"
	"github.com/strata-cloud/strata/internal/network/ipam"
	"github.com/strata-cloud/strata/internal/network/lb"
	"github.com/strata-cloud/strata/internal/network/masq"
	"github.com/strata-cloud/strata/internal/network/nodewatch"
	"github.com/strata-cloud/strata/internal/network/overlay"
	"github.com/strata-cloud/strata/internal/network/policy"
	"github.com/strata-cloud/strata/internal/network/router"
	"github.com/strata-cloud/strata/internal/network/secgroup"
	"github.com/strata-cloud/strata/internal/network/tenant"
	"github.com/strata-cloud/strata/internal/pki"
)

// PodNetwork returns the agent's Network function for the pod network:
// it installs the CNI plugin, waits for the node's pod range, writes the
// CNI configuration (which makes the node Ready), masquerades traffic
// leaving the cluster, and keeps the VXLAN overlay in step with the Node
// objects until ctx is done. Beside it runs the tenant network agent
// (package tenant), whose attachment files the CNI plugin reads.
func PodNetwork(cfg Config, clusterCIDR string) func(context.Context, containerd.Paths) error {
	return func(ctx context.Context, paths containerd.Paths) error {
		cluster, err := netip.ParsePrefix(clusterCIDR)
		if err != nil {
			return fmt.Errorf("cluster CIDR %q: %w", clusterCIDR, err)
		}
		nodeIP, ok := netip.AddrFromSlice(cfg.NodeIP.To4())
		if !ok {
			return fmt.Errorf("node IP %s: only IPv4 is supported", cfg.NodeIP)
		}
		// Both plugins are one executable, run under their names.
		exe, err := helperbin.Install(filepath.Join(paths.CNIBin, ".bin"), helperbin.CNI, cfg.Binary)
		if err != nil {
			return err
		}
		for _, name := range []string{cni.PluginType, cni.LoopbackType} {
			plugin := filepath.Join(paths.CNIBin, name)
			_ = os.Remove(plugin)
			if err := os.Symlink(exe, plugin); err != nil {
				return fmt.Errorf("install CNI plugin %s: %w", name, err)
			}
		}
		if err := masq.EnsureIPForward(); err != nil {
			return err
		}
		// Service traffic between pods on one bridge must pass the host's
		// netfilter hooks (kube-proxy's DNAT and its reverse); host-wide.
		if err := os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1"), 0o644); err != nil {
			cfg.Logger.Warn("br_netfilter unavailable: pods may not reach Services backed by pods on the same node", "err", err)
		}
		client, err := nodeClient(ctx, cfg.Kubeconfig)
		if err != nil {
			return err
		}
		var node *corev1.Node
		err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			n, err := client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
			if err != nil || n.Spec.PodCIDR == "" {
				return false, nil
			}
			node = n
			return true, nil
		})
		if err != nil {
			return nil // stopped while waiting
		}
		podCIDR, err := netip.ParsePrefix(node.Spec.PodCIDR)
		if err != nil {
			return fmt.Errorf("node %s pod CIDR %q: %w", cfg.NodeName, node.Spec.PodCIDR, err)
		}
		if err := masq.EnsureMasquerade(ctx, cluster, cni.DefaultBridge); err != nil {
			return err
		}
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		ov, err := overlay.New(overlay.Config{NodeName: cfg.NodeName, NodeIP: nodeIP, PodCIDR: podCIDR}, h)
		if err != nil {
			return err
		}
		if _, err := ov.EnsureDevice(ctx); err != nil {
			return fmt.Errorf("overlay device: %w", err)
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ov.Local().Annotations()}})
		if _, err := client.CoreV1().Nodes().Patch(ctx, cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("publish overlay address on node %s: %w", cfg.NodeName, err)
		}
		tenantDir := filepath.Join(cfg.DataDir, "cni", "tenant")
		conf, err := cni.ConfList("strata", cni.NetConf{
			PodCIDR: podCIDR.String(), ClusterCIDR: cluster.String(),
			IPAMDir:             filepath.Join(cfg.DataDir, "cni", "ipam"),
			TenantAttachmentDir: tenantDir,
		})
		if err != nil {
			return err
		}
		if err := pki.WriteFileAtomic(filepath.Join(paths.CNIConf, "10-strata.conflist"), conf, 0o644); err != nil {
			return err
		}
		cfg.Logger.Info("pod network ready", "podCIDR", podCIDR, "bridge", cni.DefaultBridge)
		// Cluster DNS listens on the bridge's gateway, so the bridge is
		// made now rather than with the first pod.
		listen := dns.ListenAddress(podCIDR)
		if _, err := bridge.Ensure(h, cni.DefaultBridge, netip.PrefixFrom(listen.Addr(), podCIDR.Bits()), cni.DefaultMTU); err != nil {
			return fmt.Errorf("pod bridge: %w", err)
		}
		dyn, err := dynamic.NewForConfig(restConfig(cfg.Kubeconfig))
		if err != nil {
			return err
		}
		dnsServer, err := dns.New(dns.Config{
			ClusterDomain: cfg.ClusterDomain,
			Listen:        []string{listen.String()},
			Logger:        cfg.Logger.With("component", "dns"),
			Dynamic:       dyn,
		}, client)
		if err != nil {
			return err
		}
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			if err := dnsServer.Run(ctx); err != nil {
				return fmt.Errorf("cluster DNS on %s: %w", listen, err)
			}
			return nil
		})
		vms := vmhandler.New(vmhandler.Config{
			NodeName: cfg.NodeName, NodeIP: nodeIP, Client: client, Dynamic: dyn,
			ContainerdSocket: paths.Socket(), Logger: cfg.Logger.With("component", "vm-migration"),
		})
		ipamDir := filepath.Join(cfg.DataDir, "cni", "ipam", cni.PodNetworkName)
		g.Go(func() error { return syncOverlay(ctx, cfg, client, ov, podCIDR, ipamDir, vms) })
		g.Go(func() error { return vms.Run(ctx) })
		g.Go(func() error { return vms.RunRoutedIPs(ctx) })
		g.Go(func() error {
			return policy.Run(ctx, policy.Config{Client: client, NodeName: cfg.NodeName, Logger: cfg.Logger.With("component", "network-policy")})
		})
		g.Go(func() error {
			// Its failure leaves tenant pods waiting; the pod network goes on.
			if err := tenant.Run(ctx, tenant.Config{
				NodeName: cfg.NodeName, NodeIP: nodeIP, Client: client, Dynamic: dyn,
				AttachmentDir: tenantDir, Logger: cfg.Logger.With("component", "tenant-networks"),
			}); err != nil {
				cfg.Logger.Error("tenant networks stopped", "err", err)
			}
			return nil
		})
		g.Go(func() error {
			// Unfiltered tenant ports are no reason to stop the pod network.
			if err := secgroup.Run(ctx, secgroup.Config{Client: dyn, NodeName: cfg.NodeName, Logger: cfg.Logger.With("component", "security-groups")}); err != nil {
				cfg.Logger.Error("security groups are not enforced on this node", "err", err)
			}
			return nil
		})
		announcer := lb.NewAnnouncer(lb.AnnouncerConfig{NodeName: cfg.NodeName, NodeIP: nodeIP, Client: client, Logger: cfg.Logger.With("component", "lb")})
		g.Go(func() error { return announcer.Run(ctx) })
		g.Go(func() error {
			// Routers are no reason to stop the pod network.
			rcfg := router.Config{NodeName: cfg.NodeName, NodeIP: nodeIP, Dynamic: dyn, Logger: cfg.Logger.With("component", "router")}
			if err := router.Run(ctx, rcfg); err != nil {
				cfg.Logger.Error("Neutron routers will not run on this node", "err", err)
			}
			return nil
		})
		return g.Wait()
	}
}

// syncOverlay reprograms the overlay whenever a Node changes, and keeps
// this node's addresses that migrated VMs took elsewhere reserved.
func syncOverlay(ctx context.Context, cfg Config, client kubernetes.Interface, ov *overlay.Overlay, podCIDR netip.Prefix, ipamDir string, vms *vmhandler.Handler) error {
	nodes, err := nodewatch.Start(ctx, client)
	if err != nil {
		return err
	}
	defer nodes.Stop()
	// Reservations wait for the source pod to release the address: retry.
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-nodes.Changed:
		case <-vms.Changed():
		case <-tick.C:
		}
		list, err := nodes.Lister.List(labels.Everything())
		if err != nil {
			continue
		}
		var peers []overlay.Node
		moved := vms.Moved() // just migrated: route them before the Node says so
		for _, n := range list {
			p, err := overlay.NodeFromObject(n.Name, n.Spec.PodCIDR, n.Annotations, internalIP(n))
			if err == nil {
				for _, a := range moved[n.Name] {
					if !slices.Contains(p.RoutedIPs, a) {
						p.RoutedIPs = append(p.RoutedIPs, a)
					}
				}
				peers = append(peers, p)
			}
		}
		if err := ov.Sync(ctx, peers); err != nil {
			cfg.Logger.Warn("overlay sync incomplete", "err", err)
		}
		if err := reserveRoutedIPs(ctx, ipamDir, podCIDR, cfg.NodeName, peers); err != nil {
			cfg.Logger.Warn("reserving addresses of VMs that migrated away", "err", err)
		}
	}
}

// reserveRoutedIPs holds, in this node's IPAM, the addresses of its range
// that other nodes host for migrated VMs, so no new pod here takes them;
// and gives back those no node hosts any more.
func reserveRoutedIPs(ctx context.Context, dir string, podCIDR netip.Prefix, self string, peers []overlay.Node) error {
	want := map[netip.Addr]ipam.Key{}
	for _, p := range peers {
		if p.Name == self {
			continue
		}
		for _, a := range p.RoutedIPs {
			if podCIDR.Contains(a) {
				want[a] = ipam.Key{ContainerID: ipam.ReservedPrefix + "routed-to-" + p.Name, IfName: a.String()}
			}
		}
	}
	store, err := ipam.Open(dir, podCIDR)
	if err != nil {
		return err
	}
	have, err := store.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range have {
		if strings.HasPrefix(a.ContainerID, ipam.ReservedPrefix) && want[a.IP] != a.Key {
			errs = append(errs, store.Release(ctx, a.Key))
		}
	}
	for ip, key := range want {
		if _, err := store.AllocateAddr(ctx, key, ip); err != nil && !errors.Is(err, ipam.ErrUnavailable) {
			errs = append(errs, err) // unavailable: the VM's old pod still holds it
		}
	}
	return errors.Join(errs...)
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// restConfig is the node's client config (nodeClient has waited for it).
func restConfig(kubeconfig string) *rest.Config {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return &rest.Config{}
	}
	return rc
}

// nodeClient waits for the node's kubeconfig (a joining kubelet writes it
// once its certificate is approved) and returns a client using it.
func nodeClient(ctx context.Context, kubeconfig string) (kubernetes.Interface, error) {
	var client kubernetes.Interface
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(context.Context) (bool, error) {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return false, nil
		}
		client, err = kubernetes.NewForConfig(rc)
		return err == nil, nil
	})
	return client, err
}
