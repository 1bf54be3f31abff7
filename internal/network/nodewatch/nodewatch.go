// Package nodewatch tells node-level reconcilers (the overlay, the cluster
// DNS endpoints) when any Node changed, from one informer: they recompute
// their whole state from the lister, so a change is a signal, coalesced,
// not an event to replay. Signal is that coalesced signal, for the node's
// other reconcilers and their own informers.
package nodewatch

import (
	"context"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// A Watch lists Nodes and signals their changes.
type Watch struct {
	// Lister reads the Nodes from the informer's cache.
	Lister corelisters.NodeLister
	// Changed receives a value after any Node was added, updated or
	// deleted; several changes may arrive as one.
	Changed <-chan struct{}

	informer cache.SharedIndexInformer
	factory  informers.SharedInformerFactory
}

// Start watches the Nodes until ctx is done; call Stop after that to wait
// for the informer to end.
func Start(ctx context.Context, client kubernetes.Interface) (*Watch, error) {
	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	nodes := factory.Core().V1().Nodes()
	signal := NewSignal()
	informer := nodes.Informer()
	if _, err := informer.AddEventHandler(signal.Handler()); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	return &Watch{Lister: nodes.Lister(), Changed: signal.C, informer: informer, factory: factory}, nil
}

// HasSynced reports whether the lister holds every Node.
func (w *Watch) HasSynced() bool { return w.informer.HasSynced() }

// Stop waits for the informer's goroutines to end (after ctx is done).
func (w *Watch) Stop() { w.factory.Shutdown() }

// Signal is a coalesced change signal: Poke leaves at most one value
// pending in C, so a reconciler that recomputes its whole state wakes once
// for a burst of changes.
type Signal struct{ C chan struct{} }

// NewSignal returns a Signal with nothing pending.
func NewSignal() Signal { return Signal{C: make(chan struct{}, 1)} }

// Poke makes a value pending in C unless one already is.
func (s Signal) Poke() {
	select {
	case s.C <- struct{}{}:
	default:
	}
}

// Handler pokes s on every add, update and delete an informer reports.
func (s Signal) Handler() cache.ResourceEventHandlerFuncs {
	poke := func(any) { s.Poke() }
	return cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, _ any) { s.Poke() }, DeleteFunc: poke}
}
