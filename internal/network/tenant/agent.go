package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/nodewatch"
)

// Resources the agent watches.
var (
	networksGVR = networkingv1alpha1.GroupVersion.WithResource("networks")
	subnetsGVR  = networkingv1alpha1.GroupVersion.WithResource("subnets")
	portsGVR    = networkingv1alpha1.GroupVersion.WithResource("ports")
	routersGVR  = networkingv1alpha1.GroupVersion.WithResource("routers")
)

// Config is one node's tenant network agent.
type Config struct {
	NodeName string
	NodeIP   netip.Addr
	// Client reads this node's Pods and the Nodes; Dynamic reads the networking.strata.io kinds
	// (get, list, watch) and writes Ports' status.
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// AttachmentDir is where the agent writes the attachments the CNI plugin reads (the CNI
	// config's tenantAttachmentDir).
	AttachmentDir string
	Logger        *slog.Logger
	// Resync is how often the whole plan is applied again without any change (default 30s).
	Resync time.Duration
}

// segmentSyncer is Segments, replaceable in tests.
type segmentSyncer interface {
	Sync(ctx context.Context, st State) error
}

// Run keeps the node's tenant networks in line with the API until ctx is done: it makes the
// segments of the networks its pods and routers use, writes each tenant pod's attachment file
// once its Port has an address and MAC, removes the files of pods gone, and binds Ports to the
// node (status.nodeName, ACTIVE) once their pod runs: a running pod's sandbox was attached by
// the CNI plugin, which succeeds only after reading the file. Ports bound here that no local pod
// uses any more go back to DOWN.
func Run(ctx context.Context, cfg Config) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("tenant: netlink: %w", err)
	}
	defer h.Close()
	segs, err := NewSegments(h, cfg.NodeIP, nil)
	if err != nil {
		return err
	}
	return run(ctx, cfg, segs)
}

func run(ctx context.Context, cfg Config, segs segmentSyncer) error {
	if cfg.NodeName == "" || cfg.AttachmentDir == "" || cfg.Client == nil || cfg.Dynamic == nil {
		return errors.New("tenant: agent needs a node name, an attachment dir and clients")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.AttachmentDir, 0o755); err != nil {
		return fmt.Errorf("tenant: attachment dir: %w", err)
	}
	signal := nodewatch.NewSignal()
	changed := signal.C
	handler := signal.Handler()

	core := informers.NewSharedInformerFactory(cfg.Client, 10*time.Minute)
	local := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 10*time.Minute, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}))
	dyn := dynamicinformer.NewFilteredDynamicSharedInformerFactory(cfg.Dynamic, 10*time.Minute, metav1.NamespaceAll, nil)
	nodes, pods := core.Core().V1().Nodes(), local.Core().V1().Pods()
	infs := []cache.SharedIndexInformer{nodes.Informer(), pods.Informer()}
	listers := map[schema.GroupVersionResource]cache.GenericLister{}
	for _, gvr := range []schema.GroupVersionResource{networksGVR, subnetsGVR, portsGVR, routersGVR} {
		inf := dyn.ForResource(gvr)
		infs = append(infs, inf.Informer())
		listers[gvr] = inf.Lister()
	}
	for _, inf := range infs {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	core.Start(ctx.Done())
	local.Start(ctx.Done())
	dyn.Start(ctx.Done())
	defer func() { core.Shutdown(); local.Shutdown(); dyn.Shutdown() }()
	synced := make([]cache.InformerSynced, len(infs))
	for i, inf := range infs {
		synced[i] = inf.HasSynced
	}
	// A plan from half-filled caches would tear down segments that running pods use.
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil
	}
	cfg.Logger.Info("tenant networks: watching", "dir", cfg.AttachmentDir)

	a := &agent{cfg: cfg, segs: segs, waiting: map[Ref]string{}}
	tick := time.NewTicker(cfg.Resync)
	defer tick.Stop()
	for {
		o := Objects{Node: cfg.NodeName, NodeIP: cfg.NodeIP}
		if err := a.collect(&o, nodes.Lister().List, pods.Lister().List, listers); err != nil {
			cfg.Logger.Warn("tenant networks: reading the caches", "err", err)
		} else {
			a.apply(ctx, MakePlan(o))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

type agent struct {
	cfg  Config
	segs segmentSyncer
	// waiting is what was last logged per pod, so a pod's reason is logged once.
	waiting map[Ref]string
}

func (a *agent) collect(o *Objects, listNodes func(labels.Selector) ([]*corev1.Node, error),
	listPods func(labels.Selector) ([]*corev1.Pod, error), listers map[schema.GroupVersionResource]cache.GenericLister) error {
	var err error
	if o.Nodes, err = listNodes(labels.Everything()); err != nil {
		return err
	}
	if o.Pods, err = listPods(labels.Everything()); err != nil {
		return err
	}
	if o.Networks, err = listTyped[networkingv1alpha1.Network](listers[networksGVR]); err != nil {
		return err
	}
	if o.Subnets, err = listTyped[networkingv1alpha1.Subnet](listers[subnetsGVR]); err != nil {
		return err
	}
	if o.Ports, err = listTyped[networkingv1alpha1.Port](listers[portsGVR]); err != nil {
		return err
	}
	o.Routers, err = listTyped[networkingv1alpha1.Router](listers[routersGVR])
	return err
}

// listTyped converts a dynamic lister's objects; those that do not decode are skipped.
func listTyped[T any](l cache.GenericLister) ([]*T, error) {
	objs, err := l.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	out := make([]*T, 0, len(objs))
	for _, obj := range objs {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		t := new(T)
		if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t) == nil {
			out = append(out, t)
		}
	}
	return out, nil
}

// apply carries a plan out: segments first (the CNI plugin expects the bridge once the file
// exists), then the files, then the Ports' status.
func (a *agent) apply(ctx context.Context, p Plan) {
	log := a.cfg.Logger
	if err := a.segs.Sync(ctx, p.State); err != nil {
		log.Warn("tenant networks: segments incomplete", "err", err)
	}
	for ref, why := range p.Waiting {
		if a.waiting[ref] != why {
			log.Info("tenant networks: pod waits", "pod", ref.String(), "reason", why)
		}
	}
	a.waiting = p.Waiting

	written := map[Ref]bool{}
	keep := map[string]bool{}
	for _, att := range p.Attachments {
		ref := Ref{att.Namespace, att.Pod}
		keep[att.Namespace+"_"+att.Pod] = true
		if !segmentReady(p.State, att.VNI) {
			continue
		}
		if err := cni.WriteTenantAttachment(a.cfg.AttachmentDir, att); err != nil {
			log.Warn("tenant networks: attachment file", "pod", ref.String(), "err", err)
			continue
		}
		written[ref] = true
	}
	// Waiting pods keep a file they already had: a Port's status going briefly incomplete must
	// not fail a sandbox restart.
	for ref := range p.Waiting {
		keep[ref.Namespace+"_"+ref.Name] = true
	}
	stems, err := cni.ListTenantAttachments(a.cfg.AttachmentDir)
	if err != nil {
		log.Warn("tenant networks: listing attachment files", "err", err)
	}
	for _, stem := range stems {
		if !keep[stem] {
			if err := os.Remove(filepath.Join(a.cfg.AttachmentDir, stem+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
				log.Warn("tenant networks: removing attachment file", "file", stem, "err", err)
			}
		}
	}

	for _, c := range p.Claims {
		if !written[c.Pod] {
			continue
		}
		err := a.setPortStatus(ctx, c.Port, func(st *networkingv1alpha1.PortStatus) bool {
			if st.NodeName == a.cfg.NodeName && st.Status == networkingv1alpha1.StatusActive {
				return false
			}
			st.NodeName, st.Status = a.cfg.NodeName, networkingv1alpha1.StatusActive
			return true
		})
		if err != nil {
			log.Warn("tenant networks: binding port", "port", c.Port.String(), "err", err)
		} else {
			log.Info("tenant networks: port active", "port", c.Port.String(), "pod", c.Pod.String())
		}
	}
	for _, ref := range p.Releases {
		err := a.setPortStatus(ctx, ref, func(st *networkingv1alpha1.PortStatus) bool {
			if st.NodeName != a.cfg.NodeName || st.Status != networkingv1alpha1.StatusActive {
				return false // bound elsewhere meanwhile
			}
			st.NodeName, st.Status = "", networkingv1alpha1.StatusDown
			return true
		})
		if err != nil {
			log.Warn("tenant networks: unbinding port", "port", ref.String(), "err", err)
		}
	}
}

// segmentReady reports whether the plan has vni's segment (so the bridge exists for the CNI).
func segmentReady(st State, vni int32) bool {
	for _, s := range st.Segments {
		if s.VNI == vni {
			return true
		}
	}
	return false
}

// setPortStatus reads the Port, lets change edit its status (false: nothing to do) and writes
// the status subresource, again on conflict.
func (a *agent) setPortStatus(ctx context.Context, ref Ref, change func(*networkingv1alpha1.PortStatus) bool) error {
	ports := a.cfg.Dynamic.Resource(portsGVR).Namespace(ref.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := ports.Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		var port networkingv1alpha1.Port
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &port); err != nil {
			return err
		}
		if !change(&port.Status) {
			return nil
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&port)
		if err != nil {
			return err
		}
		_, err = ports.UpdateStatus(ctx, &unstructured.Unstructured{Object: obj}, metav1.UpdateOptions{})
		return err
	})
}
