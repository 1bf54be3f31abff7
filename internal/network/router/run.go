package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/vishvananda/netlink"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/nodewatch"
)

// Config is what Run needs.
type Config struct {
	NodeName string
	// NodeIP finds an external network's host interface when the network
	// names none.
	NodeIP netip.Addr
	// Dynamic is the node's client: get/list/watch routers, floatingips,
	// subnets and networks of networking.strata.io in every namespace.
	Dynamic dynamic.Interface
	Logger  *slog.Logger
	// NetNSDir holds router namespaces; DefaultNetNSDir when empty.
	NetNSDir string
	// Host is a netlink handle in the node's namespace; the caller's
	// namespace when nil.
	Host *netlink.Handle
}

const (
	resync = time.Minute      // repairs outside edits
	retry  = 10 * time.Second // after a partial failure (a bridge not there yet)
)

var (
	routersGVR     = netv1.GroupVersion.WithResource("routers")
	floatingIPsGVR = netv1.GroupVersion.WithResource("floatingips")
	subnetsGVR     = netv1.GroupVersion.WithResource("subnets")
	networksGVR    = netv1.GroupVersion.WithResource("networks")
)

// Run realises every Router whose status.nodeName is this node, and
// removes the namespaces of routers that are gone or moved elsewhere,
// until ctx is done. Incomplete routers are realised as far as they go
// and retried; Run returns an error only when it cannot start.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dynamic == nil || cfg.NodeName == "" {
		return errors.New("router: Run needs a client and the node's name")
	}
	host := cfg.Host
	if host == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("router: netlink: %w", err)
		}
		defer h.Close()
		host = h
	}
	node := &Node{Host: host, NodeIP: cfg.NodeIP, NetNSDir: cfg.NetNSDir, Owner: cfg.NodeName, Logger: cfg.Logger}

	factory := dynamicinformer.NewDynamicSharedInformerFactory(cfg.Dynamic, 0)
	signal := nodewatch.NewSignal()
	changed := signal.C
	handler := signal.Handler()
	stores := map[schema.GroupVersionResource]cache.Store{}
	for _, gvr := range []schema.GroupVersionResource{routersGVR, floatingIPsGVR, subnetsGVR, networksGVR} {
		inf := factory.ForResource(gvr).Informer()
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("router: watch %s: %w", gvr.Resource, err)
		}
		stores[gvr] = inf.GetStore()
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	// Until every cache is whole, a router missing from it may just not
	// be listed yet: removing namespaces then would cut traffic.
	for gvr, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("router: %s did not sync", gvr.Resource)
		}
	}
	cfg.Logger.Info("router agent started", "node", cfg.NodeName)

	s := &syncer{cfg: cfg, node: node, stores: stores, lastErr: map[string]string{}}
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastFull := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-timer.C:
		}
		if time.Since(lastFull) >= resync {
			node.Forget()
			lastFull = time.Now()
		}
		next := resync
		if !s.sync(ctx) {
			next = retry
		}
		timer.Reset(next)
	}
}

type syncer struct {
	cfg     Config
	node    *Node
	stores  map[schema.GroupVersionResource]cache.Store
	lastErr map[string]string // by router, "" when realised: logs changes only
}

// snapshot is the caches' objects, typed.
type snapshot struct {
	routers     []*netv1.Router
	floatingIPs []*netv1.FloatingIP
	subnets     []*netv1.Subnet
	networks    map[string]*netv1.Network // by namespace/name
}

func (s *syncer) snapshot() snapshot {
	var snap snapshot
	snap.networks = map[string]*netv1.Network{}
	for _, o := range s.stores[routersGVR].List() {
		if r := decode[netv1.Router](o); r != nil {
			snap.routers = append(snap.routers, r)
		}
	}
	for _, o := range s.stores[floatingIPsGVR].List() {
		if f := decode[netv1.FloatingIP](o); f != nil {
			snap.floatingIPs = append(snap.floatingIPs, f)
		}
	}
	for _, o := range s.stores[subnetsGVR].List() {
		if sn := decode[netv1.Subnet](o); sn != nil {
			snap.subnets = append(snap.subnets, sn)
		}
	}
	for _, o := range s.stores[networksGVR].List() {
		if n := decode[netv1.Network](o); n != nil {
			snap.networks[n.Namespace+"/"+n.Name] = n
		}
	}
	return snap
}

func decode[T any](obj any) *T {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return nil
	}
	return out
}

// inputs gathers what Desired needs for r.
func (snap snapshot) inputs(r *netv1.Router) Inputs {
	in := Inputs{Router: r, Subnets: map[string]*netv1.Subnet{}, Networks: map[string]*netv1.Network{}, FloatingIPs: snap.floatingIPs}
	for _, sn := range snap.subnets {
		if sn.Namespace == r.Namespace {
			in.Subnets[sn.Name] = sn
		}
	}
	for _, n := range snap.networks {
		if n.Namespace == r.Namespace {
			in.Networks[n.Name] = n
		}
	}
	if gw := r.Spec.ExternalGateway; gw != nil {
		ns := gw.Network.Namespace
		if ns == "" {
			ns = r.Namespace
		}
		in.ExternalNetwork = snap.networks[ns+"/"+gw.Network.Name]
		for _, sn := range snap.subnets {
			if sn.Namespace == ns && sn.Spec.Network == gw.Network.Name {
				in.ExternalSubnets = append(in.ExternalSubnets, sn)
			}
		}
	}
	return in
}

// sync realises this node's routers and removes the others; it reports
// whether everything went through.
func (s *syncer) sync(ctx context.Context) bool {
	snap := s.snapshot()
	keep := map[string]bool{}
	ok := true
	seen := map[string]bool{}
	for _, r := range snap.routers {
		if r.Status.NodeName != s.cfg.NodeName || r.DeletionTimestamp != nil {
			continue
		}
		key := r.Namespace + "/" + r.Name
		seen[key] = true
		st, derr := Desired(snap.inputs(r))
		var err error
		if st.Namespace != "" {
			keep[st.Namespace] = true
			err = s.node.Ensure(ctx, st)
		}
		msg := ""
		if err := errors.Join(derr, err); err != nil {
			ok = false
			msg = err.Error()
		}
		if last, known := s.lastErr[key]; !known || last != msg {
			if msg != "" {
				s.cfg.Logger.Warn("router not complete; retrying", "router", key, "err", msg)
			} else {
				s.cfg.Logger.Info("router realised", "router", key, "namespace", st.Namespace,
					"interfaces", len(st.Interfaces), "floatingIPs", len(st.Floating))
			}
		}
		s.lastErr[key] = msg
	}
	for key := range s.lastErr {
		if !seen[key] {
			delete(s.lastErr, key)
		}
	}
	have, err := s.node.Namespaces()
	if err != nil {
		s.cfg.Logger.Warn("router namespaces", "err", err)
		return false
	}
	for _, name := range have {
		if keep[name] {
			continue
		}
		if err := s.node.Delete(ctx, name); err != nil {
			s.cfg.Logger.Warn("removing router namespace", "namespace", name, "err", err)
			ok = false
			continue
		}
		s.cfg.Logger.Info("router namespace removed", "namespace", name)
	}
	return ok
}
