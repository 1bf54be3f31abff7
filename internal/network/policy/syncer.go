package policy

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/strata-cloud/strata/internal/network/nodewatch"
)

// Config is what Run needs.
type Config struct {
	Client   kubernetes.Interface // the node's identity: list/watch networkpolicies, pods, namespaces
	NodeName string
	Logger   *slog.Logger
	NFT      []nftables.ConnOption // the namespace to program; the caller's by default
}

// resync re-applies the table even when nothing changed, repairing outside edits.
const (
	resync   = 5 * time.Minute
	retryMin = time.Second
	retryMax = time.Minute
)

// Run keeps the table in step with the cluster's NetworkPolicies, Pods and Namespaces until ctx
// is done: after any change it recompiles everything and, when the ruleset differs from the one
// installed, replaces the table in one transaction. The table stays when Run returns, so a
// restarting agent keeps enforcing the last policy until it has synced again.
func Run(ctx context.Context, cfg Config) error {
	factory := informers.NewSharedInformerFactory(cfg.Client, 0)
	policies := factory.Networking().V1().NetworkPolicies()
	pods := factory.Core().V1().Pods()
	namespaces := factory.Core().V1().Namespaces()
	signal := nodewatch.NewSignal()
	changed := signal.C
	handler := signal.Handler()
	// Every node caches every pod: keep only what Compile reads.
	if err := pods.Informer().SetTransform(slimPod); err != nil {
		return err
	}
	for _, inf := range []cache.SharedIndexInformer{policies.Informer(), pods.Informer(), namespaces.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("network policy: %v informer did not sync", typ)
		}
	}
	log := cfg.Logger
	installed := ""
	retry := retryMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-timer.C:
			installed = "" // resync or retry
		}
		c := Cluster{Node: cfg.NodeName}
		var err error
		if c.Policies, err = policies.Lister().List(labels.Everything()); err == nil {
			if c.Pods, err = pods.Lister().List(labels.Everything()); err == nil {
				c.Namespaces, err = namespaces.Lister().List(labels.Everything())
			}
		}
		if err != nil {
			return fmt.Errorf("network policy: read cache: %w", err)
		}
		began := time.Now()
		eps := Compile(c)
		rs := Render(eps)
		text := rs.String()
		if text == installed {
			continue
		}
		compiled := time.Since(began)
		if err := Apply(ctx, rs, cfg.NFT...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("network policy not applied; retrying", "err", err, "in", retry)
			installed = ""
			timer.Reset(retry)
			retry = min(2*retry, retryMax)
			continue
		}
		installed, retry = text, retryMin
		timer.Reset(resync)
		log.Info("network policy applied", "endpoints", len(eps), "policies", len(c.Policies),
			"compile", compiled.Round(time.Microsecond), "total", time.Since(began).Round(time.Microsecond))
	}
}

// slimPod drops what Compile never reads from a cached Pod.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone
	}
	slim := &corev1.Pod{}
	slim.Name, slim.Namespace, slim.UID, slim.Labels = p.Name, p.Namespace, p.UID, p.Labels
	slim.ResourceVersion = p.ResourceVersion
	slim.Spec.NodeName, slim.Spec.HostNetwork = p.Spec.NodeName, p.Spec.HostNetwork
	for _, c := range p.Spec.InitContainers {
		if len(c.Ports) > 0 {
			slim.Spec.InitContainers = append(slim.Spec.InitContainers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	for _, c := range p.Spec.Containers {
		if len(c.Ports) > 0 {
			slim.Spec.Containers = append(slim.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	slim.Status.Phase, slim.Status.PodIP, slim.Status.PodIPs = p.Status.Phase, p.Status.PodIP, p.Status.PodIPs
	return slim, nil
}
