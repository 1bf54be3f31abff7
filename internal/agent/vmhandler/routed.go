package vmhandler

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/nodewatch"
	"github.com/strata-cloud/strata/internal/network/overlay"
	"github.com/strata-cloud/strata/internal/network/tenant"
)

// Addresses that moved here with a migrated VM. The guest keeps the IP it
// had on its first node, outside this node's pod range. The migration
// controller marks the VM's launcher pod with cni.AnnotationRoutedIP once the
// guest runs here; this node then routes that address to its bridge, and
// publishes it on its Node (overlay.AnnotationRoutedIPs) so that every
// other node sends it here (a /32 over the overlay, more specific than the
// first node's pod range). The bridge answers ARP for the rest of the
// cluster network (proxy ARP), so the guest, which still believes its
// first node's gateway and neighbours are on its link, reaches them
// through this node.

// routeProtocol marks the /32 routes this package adds to the bridge.
const routeProtocol = netlink.RouteProtocol(0x53)

// RunRoutedIPs keeps the routes and the Node annotation in line with the
// local pods' AnnotationRoutedIP until ctx ends.
func (h *Handler) RunRoutedIPs(ctx context.Context) error {
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+cni.DefaultBridge+"/proxy_arp", []byte("1"), 0o644); err != nil {
		h.cfg.Logger.Warn("proxy ARP on the pod bridge unavailable: migrated VMs cannot reach their old gateway", "err", err)
	}
	lw := cache.NewFilteredListWatchFromClient(h.cfg.Client.CoreV1().RESTClient(), "pods", metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", h.cfg.NodeName).String()
	})
	signal := nodewatch.NewSignal()
	changed := signal.C
	store, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw, ObjectType: &corev1.Pod{},
		Handler: signal.Handler(),
	})
	go ctrl.Run(ctx.Done())
	published := "-"
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-h.localChanged:
		case <-tick.C:
		}
		ips := h.Moved()[h.cfg.NodeName]
		for _, o := range store.List() {
			p := o.(*corev1.Pod)
			if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
				continue
			}
			if _, onTenant := tenant.PodPort(p); onTenant {
				continue // its address is a tenant network's, which the pod network must never route
			}
			if a, err := netip.ParseAddr(p.Annotations[cni.AnnotationRoutedIP]); err == nil && a.Is4() {
				ips = append(ips, a)
			}
		}
		slices.SortFunc(ips, netip.Addr.Compare)
		ips = slices.Compact(ips)
		if err := syncLocalRoutes(ips); err != nil {
			h.cfg.Logger.Warn("routes for migrated VMs", "err", err)
		}
		var list []string
		for _, a := range ips {
			list = append(list, a.String())
		}
		value := strings.Join(list, ",")
		if value == published {
			continue
		}
		var ann any = value
		if value == "" {
			ann = nil
		}
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{overlay.AnnotationRoutedIPs: ann}}})
		if _, err := h.cfg.Client.CoreV1().Nodes().Patch(ctx, h.cfg.NodeName, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
			h.cfg.Logger.Warn("publishing migrated VMs' addresses", "err", err)
			signal.Poke()
			continue
		}
		published = value
		h.cfg.Logger.Info("addresses of VMs that migrated here", "ips", value)
	}
}

// syncLocalRoutes makes the bridge's marked /32 routes exactly ips.
func syncLocalRoutes(ips []netip.Addr) error {
	br, err := netlink.LinkByName(cni.DefaultBridge)
	if err != nil {
		if len(ips) == 0 {
			return nil
		}
		return err
	}
	have, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: br.Attrs().Index, Protocol: routeProtocol},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return err
	}
	want := map[netip.Addr]bool{}
	for _, a := range ips {
		want[a] = true
		r := &netlink.Route{LinkIndex: br.Attrs().Index, Dst: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK, Protocol: routeProtocol}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s to %s: %w", a, cni.DefaultBridge, err)
		}
	}
	for _, r := range have {
		if r.Dst == nil {
			continue
		}
		a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		if ones, _ := r.Dst.Mask.Size(); ones == 32 && !want[a] {
			netlink.RouteDel(&r)
		}
	}
	return nil
}
