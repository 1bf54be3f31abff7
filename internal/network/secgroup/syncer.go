package secgroup

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/nftables"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/nodewatch"
	"github.com/strata-cloud/strata/internal/network/policy"
	"github.com/strata-cloud/strata/internal/network/tenant"
)

// Resources Run watches, cluster-wide.
var (
	securityGroups = netv1.GroupVersion.WithResource("securitygroups")
	ports          = netv1.GroupVersion.WithResource("ports")
	networks       = netv1.GroupVersion.WithResource("networks")
)

// Config is what Run needs.
type Config struct {
	NodeName string
	// Client has the node's identity: get/list/watch securitygroups, ports and networks of
	// networking.strata.io in every namespace.
	Client dynamic.Interface
	Logger *slog.Logger
	NFT    []nftables.ConnOption // the namespace to program; the caller's by default
	// Debounce is how long Run waits after a change for more before recompiling; 0: 20 ms.
	Debounce time.Duration
	// BridgeOf says where a Network's ports are on a node; nil: NetworkOnNode.
	BridgeOf func(*netv1.Network) (Network, bool)
	// Applied, when set, hears of every ruleset installed (its nft text) and how long the
	// apply took.
	Applied func(text string, apply time.Duration)
}

// NetworkOnNode is a vxlan Network's bridge (tenant.BridgeName of its VNI) and conntrack zone;
// false for flat networks and networks without a VNI yet.
func NetworkOnNode(n *netv1.Network) (Network, bool) {
	vni := n.Status.SegmentationID
	if (n.Spec.ProviderType != "" && n.Spec.ProviderType != netv1.ProviderVXLAN) || vni <= 0 {
		return Network{}, false
	}
	return Network{Bridge: tenant.BridgeName(vni), Zone: ZoneFor(vni)}, true
}

const (
	debounce = 20 * time.Millisecond
	resync   = 5 * time.Minute // re-apply even when nothing changed, repairing outside edits
	retryMin = time.Second
	retryMax = time.Minute
)

// Run keeps the table in step with the cluster's SecurityGroups, Ports and Networks until ctx
// is done: after a change (and Debounce without another) it recompiles everything and, when the
// ruleset differs from the one installed, replaces the table in one transaction. The table
// stays when Run returns, so a restarting agent keeps enforcing the last groups until it has
// synced again.
//
// Bridged traffic reaches the table through br_netfilter: the caller turns on
// net.bridge.bridge-nf-call-iptables, as the agent's pod network does.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	bridgeOf := cfg.BridgeOf
	if bridgeOf == nil {
		bridgeOf = NetworkOnNode
	}
	wait := cfg.Debounce
	if wait <= 0 {
		wait = debounce
	}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(cfg.Client, 0)
	signal := nodewatch.NewSignal()
	changed := signal.C
	handler := signal.Handler()
	informers := map[string]cache.SharedIndexInformer{}
	for _, w := range []struct {
		name string
		inf  cache.SharedIndexInformer
		slim cache.TransformFunc
	}{
		{"securitygroups", factory.ForResource(securityGroups).Informer(), typed(slimGroup)},
		{"ports", factory.ForResource(ports).Informer(), typed(slimPort)},
		{"networks", factory.ForResource(networks).Informer(), typed(slimNetwork)},
	} {
		if err := w.inf.SetTransform(w.slim); err != nil {
			return err
		}
		if _, err := w.inf.AddEventHandler(handler); err != nil {
			return err
		}
		informers[w.name] = w.inf
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("security groups: %v informer did not sync", typ)
		}
	}

	installed := ""
	retry := retryMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			// Let a burst of changes (a group and its ports, a bulk edit) settle.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			select {
			case <-changed:
			default:
			}
		case <-timer.C:
			installed = "" // resync or retry
		}
		began := time.Now()
		in := Input{Node: cfg.NodeName, Networks: map[string]Network{}}
		for _, o := range informers["securitygroups"].GetStore().List() {
			if g, ok := o.(*netv1.SecurityGroup); ok {
				in.Groups = append(in.Groups, g)
			}
		}
		for _, o := range informers["ports"].GetStore().List() {
			if p, ok := o.(*netv1.Port); ok {
				in.Ports = append(in.Ports, p)
			}
		}
		for _, o := range informers["networks"].GetStore().List() {
			if n, ok := o.(*netv1.Network); ok {
				if nw, ok := bridgeOf(n); ok {
					in.Networks[n.Namespace+"/"+n.Name] = nw
				}
			}
		}
		eps := Compile(in)
		rs := Render(eps)
		text := rs.String()
		if text == installed {
			continue
		}
		compiled := time.Since(began)
		if err := policy.Apply(ctx, rs, cfg.NFT...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("security groups not applied; retrying", "err", err, "in", retry)
			installed = ""
			timer.Reset(retry)
			retry = min(2*retry, retryMax)
			continue
		}
		applied := time.Since(began) - compiled
		installed, retry = text, retryMin
		timer.Reset(resync)
		if cfg.Applied != nil {
			cfg.Applied(text, applied)
		}
		log.Info("security groups applied", "ports", len(eps), "groups", len(in.Groups),
			"compile", compiled.Round(time.Microsecond), "apply", applied.Round(time.Microsecond))
	}
}

// typed turns the informer's unstructured objects into slimmed typed ones, so the caches
// hold only what Compile reads.
func typed[T any](slim func(*T) any) cache.TransformFunc {
	return func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil // a DeletedFinalStateUnknown tombstone
		}
		t := new(T)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t); err != nil {
			return nil, fmt.Errorf("security groups: decode %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		return slim(t), nil
	}
}

func meta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
}

func slimGroup(g *netv1.SecurityGroup) any {
	out := &netv1.SecurityGroup{ObjectMeta: meta(g.ObjectMeta), Spec: g.Spec}
	for i := range out.Spec.Rules {
		out.Spec.Rules[i].Description = ""
	}
	out.Spec.Description = ""
	return out
}

func slimPort(p *netv1.Port) any {
	out := &netv1.Port{ObjectMeta: meta(p.ObjectMeta), Spec: p.Spec, Status: p.Status}
	out.Status.Conditions = nil
	return out
}

func slimNetwork(n *netv1.Network) any {
	out := &netv1.Network{ObjectMeta: meta(n.ObjectMeta)}
	out.Spec.ProviderType, out.Status.SegmentationID = n.Spec.ProviderType, n.Status.SegmentationID
	return out
}
