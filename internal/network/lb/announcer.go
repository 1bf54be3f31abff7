package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"

	"github.com/strata-cloud/strata/internal/network/nodewatch"
)

// AnnouncerConfig configures a node's announcer.
type AnnouncerConfig struct {
	NodeName string
	// NodeIP selects the underlay interface: the one holding it.
	NodeIP netip.Addr
	Client kubernetes.Interface
	Logger *slog.Logger
}

// An Announcer makes this node answer ARP for the addresses of the
// LoadBalancer Services whose lock it holds, competing for the lock of
// every Service it is eligible to announce.
type Announcer struct {
	cfg       AnnouncerConfig
	services  corelisters.ServiceLister
	endpoints discoverylisters.EndpointSliceLister
	nodes     corelisters.NodeLister
	locks     corelisters.ConfigMapLister
	recorder  events.EventRecorder

	observed map[string]observation // by lock name
	written  map[string]writtenLease
	holding  map[string][]netip.Addr // locks held now, with their addresses
}

type observation struct {
	resourceVersion string
	at              time.Time
}

// writtenLease is this node's last write of a lock, used until the
// informer shows it (or for at most writtenTrust).
type writtenLease struct {
	lock *corev1.ConfigMap
	at   time.Time
}

const (
	writtenTrust = 2 * RenewInterval
	writeTimeout = 2 * time.Second
	// syncEvery bounds how late an expiry is noticed when nothing changes.
	syncEvery = 500 * time.Millisecond
)

// NewAnnouncer returns the announcer of cfg.NodeName.
func NewAnnouncer(cfg AnnouncerConfig) *Announcer {
	return &Announcer{cfg: cfg, observed: map[string]observation{}, written: map[string]writtenLease{}, holding: map[string][]netip.Addr{}}
}

// Run announces until ctx is done, then releases the locks it holds so
// that other nodes take over at once. A node whose underlay cannot carry
// ARP (its node IP on loopback, say) logs why and announces nothing.
func (a *Announcer) Run(ctx context.Context) error {
	iface, err := interfaceWith(a.cfg.NodeIP)
	var resp *responder
	if err == nil {
		resp, err = openResponder(iface)
	}
	if err != nil {
		a.cfg.Logger.Warn("this node will not announce LoadBalancer addresses", "err", err)
		<-ctx.Done()
		return nil
	}
	served := make(chan error, 1)
	go func() { served <- resp.serve() }()
	defer func() {
		resp.close()
		<-served
	}()

	signal := nodewatch.NewSignal()
	changed := signal.C
	handler := signal.Handler()
	all := informers.NewSharedInformerFactory(a.cfg.Client, 10*time.Minute)
	own := informers.NewSharedInformerFactoryWithOptions(a.cfg.Client, 10*time.Minute, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.cfg.NodeName).String()
	}))
	leaseNS := informers.NewSharedInformerFactoryWithOptions(a.cfg.Client, 10*time.Minute, informers.WithNamespace(LeaseNamespace))
	var synced []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{
		all.Core().V1().Services().Informer(), all.Discovery().V1().EndpointSlices().Informer(),
		own.Core().V1().Nodes().Informer(), leaseNS.Core().V1().ConfigMaps().Informer(),
	} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
		synced = append(synced, inf.HasSynced)
	}
	a.services = all.Core().V1().Services().Lister()
	a.endpoints = all.Discovery().V1().EndpointSlices().Lister()
	a.nodes = own.Core().V1().Nodes().Lister()
	a.locks = leaseNS.Core().V1().ConfigMaps().Lister()
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: a.cfg.Client.EventsV1()})
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, "strata-lb-announcer")
	for _, f := range []informers.SharedInformerFactory{all, own, leaseNS} {
		f.Start(ctx.Done())
		defer f.Shutdown()
	}
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return err
	}
	defer broadcaster.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // stopped
	}
	a.cfg.Logger.Info("load balancer announcer started", "interface", iface.Name, "mac", iface.HardwareAddr.String())

	tick := time.NewTicker(syncEvery)
	defer tick.Stop()
	for {
		a.sync(ctx, resp, time.Now())
		select {
		case <-ctx.Done():
			release, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
			defer cancel()
			for name := range a.holding {
				a.release(release, name)
			}
			resp.set(nil)
			return nil
		case <-changed:
		case <-tick.C:
		}
		select {
		case err := <-served:
			return err
		default:
		}
	}
}

// sync takes one step with every Service's lock and answers ARP for the
// addresses of those held.
func (a *Announcer) sync(ctx context.Context, resp *responder, now time.Time) {
	node, _ := a.nodes.Get(a.cfg.NodeName)
	svcs, err := a.services.List(labels.Everything())
	if err != nil {
		return
	}
	held := map[string][]netip.Addr{}
	seen := map[string]bool{}
	for _, svc := range svcs {
		addrs := Addresses(svc)
		if !Ours(svc) || len(addrs) == 0 {
			continue
		}
		name := LeaseName(svc.Namespace, svc.Name)
		seen[name] = true
		lease, state := a.lease(name, now)
		eps, _ := a.endpoints.EndpointSlices(svc.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name}))
		if !Eligible(svc, eps, node) {
			if state.Holder == a.cfg.NodeName {
				a.release(ctx, name)
			}
			continue
		}
		action := Decide(a.cfg.NodeName, state, now)
		switch action {
		case Acquire, Renew:
			if a.write(ctx, name, lease, action, now) {
				held[name] = addrs
			}
		case Hold:
			held[name] = addrs
		}
		if _, before := a.holding[name]; !before && held[name] != nil {
			a.cfg.Logger.Info("announcing load balancer address", "service", svc.Namespace+"/"+svc.Name, "addresses", addrs)
			a.recorder.Eventf(svc, nil, corev1.EventTypeNormal, "Announcing", "Announce", "node %s answers ARP for %v", a.cfg.NodeName, addrs)
		}
	}
	for name := range a.holding {
		if held[name] == nil {
			a.cfg.Logger.Info("no longer announcing load balancer address", "lease", name, "addresses", a.holding[name])
		}
	}
	for name := range a.observed {
		if !seen[name] {
			delete(a.observed, name)
			delete(a.written, name)
		}
	}
	a.holding = held
	var addrs []netip.Addr
	for _, as := range held {
		addrs = append(addrs, as...)
	}
	for _, added := range resp.set(addrs) {
		if err := resp.announce(added); err != nil {
			a.cfg.Logger.Warn("gratuitous ARP", "address", added, "err", err)
		}
	}
}

// lease is the newest version of a Service's lock this node knows (its
// own write while the informer has not shown it yet) and its state.
func (a *Announcer) lease(name string, now time.Time) (*corev1.ConfigMap, LeaseState) {
	l, err := a.locks.ConfigMaps(LeaseNamespace).Get(name)
	if err != nil {
		l = nil
	}
	if w, ok := a.written[name]; ok {
		if l != nil && l.ResourceVersion == w.lock.ResourceVersion || now.Sub(w.at) > writtenTrust {
			delete(a.written, name)
		} else {
			l = w.lock
		}
	}
	if l == nil {
		delete(a.observed, name)
		return nil, LeaseState{}
	}
	o, ok := a.observed[name]
	if !ok || o.resourceVersion != l.ResourceVersion {
		o = observation{l.ResourceVersion, now}
		a.observed[name] = o
	}
	return l, LeaseState{Exists: true, Holder: l.Data[HolderKey], Observed: o.at}
}

// write creates, takes or renews a lock for this node and reports
// whether this node holds it: after a conflict not, after an unreachable
// API still when it did (the address stays answered; two nodes answering
// for a while is harmless, as either forwards the traffic).
func (a *Announcer) write(ctx context.Context, name string, l *corev1.ConfigMap, action Action, now time.Time) bool {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	stamp := now.UTC().Format(time.RFC3339Nano)
	var out *corev1.ConfigMap
	var err error
	if l == nil {
		out, err = a.cfg.Client.CoreV1().ConfigMaps(LeaseNamespace).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: LeaseNamespace},
			Data:       lockData(a.cfg.NodeName, stamp, stamp),
		}, metav1.CreateOptions{})
	} else {
		l = l.DeepCopy()
		acquired := l.Data[AcquireTimeKey]
		if action == Acquire {
			acquired = stamp
		}
		l.Data = lockData(a.cfg.NodeName, acquired, stamp)
		out, err = a.cfg.Client.CoreV1().ConfigMaps(LeaseNamespace).Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		delete(a.written, name)
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			return false // another node was faster
		}
		if action == Acquire {
			a.cfg.Logger.Warn("taking load balancer lock", "lock", name, "err", err)
			return false
		}
		a.cfg.Logger.Warn("renewing load balancer lock; still announcing", "lock", name, "err", err)
		return true
	}
	a.written[name] = writtenLease{out, now}
	a.observed[name] = observation{out.ResourceVersion, now}
	return true
}

// The lock's fields, named as a Lease's (for people reading it).
const (
	HolderKey      = "holderIdentity"
	AcquireTimeKey = "acquireTime"
	RenewTimeKey   = "renewTime"
)

func lockData(holder, acquired, renewed string) map[string]string {
	return map[string]string{
		HolderKey: holder, AcquireTimeKey: acquired, RenewTimeKey: renewed,
		"leaseDurationSeconds": fmt.Sprint(int(LeaseDuration / time.Second)),
	}
}

// release gives a held lock up, so that another node takes it without
// waiting for it to expire.
func (a *Announcer) release(ctx context.Context, name string) {
	l, state := a.lease(name, time.Now())
	if l == nil || state.Holder != a.cfg.NodeName {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	l = l.DeepCopy()
	l.Data[HolderKey] = ""
	if _, err := a.cfg.Client.CoreV1().ConfigMaps(LeaseNamespace).Update(ctx, l, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		a.cfg.Logger.Debug("releasing load balancer lock", "lock", name, "err", err)
	}
	delete(a.written, name)
}

// interfaceWith is the interface that holds ip.
func interfaceWith(ip netip.Addr) (*net.Interface, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, iface := range ifaces {
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		if slices.ContainsFunc(addrs, func(a net.Addr) bool {
			n, ok := a.(*net.IPNet)
			if !ok {
				return false
			}
			addr, _ := netip.AddrFromSlice(n.IP)
			return addr.Unmap() == ip
		}) {
			if len(iface.HardwareAddr) != 6 {
				return nil, fmt.Errorf("interface %s of node IP %s has no Ethernet address: ARP cannot announce on it", iface.Name, ip)
			}
			return &iface, nil
		}
	}
	return nil, errors.New("no interface holds the node IP " + ip.String())
}
