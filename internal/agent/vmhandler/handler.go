// Package vmhandler is the node agent's part in VM live migration (the
// VirtualMachineMigration controller on the server creates the target
// launcher pod and switches the VM over at the end). On the source node it
// drives the migration: it tunnels the source QEMU's streams to the target
// node (tunnel.go), runs internal/vm/migration over the source launcher's
// QMP socket and reports progress in the migration's status. On the target
// node it accepts the streams for its launcher. On every node it publishes
// the addresses that VMs which migrated in keep (routed.go).
package vmhandler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/overlay"
	"github.com/strata-cloud/strata/internal/vm/launcher"
	"github.com/strata-cloud/strata/internal/vm/migration"
	"github.com/strata-cloud/strata/internal/vm/qmp"
)

// Config is one node's handler.
type Config struct {
	NodeName         string
	NodeIP           netip.Addr
	Client           kubernetes.Interface
	Dynamic          dynamic.Interface
	ContainerdSocket string
	Logger           *slog.Logger
}

// Handler runs the node's side of VM migrations.
type Handler struct {
	cfg Config

	mu      sync.Mutex
	driving map[types.UID]context.CancelFunc
	// moved holds, for a short while after a migration ends, where a VM's
	// address went (node name), so that both ends route it at once,
	// before the target's Node annotation reaches every node.
	moved map[netip.Addr]movedIP
	// Poked when moved changes: for the overlay (Changed) and for this
	// node's own routes (RunRoutedIPs).
	changed, localChanged chan struct{}
}

type movedIP struct {
	node  string
	until time.Time
}

// movedGrace is how long a just-migrated address is routed from the
// migration's own news, before the Node annotation takes over.
const movedGrace = 2 * time.Minute

var migrations = computev1alpha1.GroupVersion.WithResource("virtualmachinemigrations")

// New returns a node's handler.
func New(cfg Config) *Handler {
	return &Handler{cfg: cfg, driving: map[types.UID]context.CancelFunc{}, moved: map[netip.Addr]movedIP{},
		changed: make(chan struct{}, 1), localChanged: make(chan struct{}, 1)}
}

// Changed delivers when Moved changes.
func (h *Handler) Changed() <-chan struct{} { return h.changed }

// Moved returns the addresses that just migrated to other nodes, by node.
func (h *Handler) Moved() map[string][]netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]netip.Addr{}
	for ip, m := range h.moved {
		if time.Now().Before(m.until) {
			out[m.node] = append(out[m.node], ip)
		} else {
			delete(h.moved, ip)
		}
	}
	return out
}

func (h *Handler) markMoved(ip, node string) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return
	}
	h.mu.Lock()
	h.moved[a] = movedIP{node: node, until: time.Now().Add(movedGrace)}
	h.mu.Unlock()
	for _, c := range []chan struct{}{h.changed, h.localChanged} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Run serves the tunnel and drives the migrations leaving this node until
// ctx ends.
func (h *Handler) Run(ctx context.Context) error {
	cfg := h.cfg
	go func() {
		if err := h.serveTunnel(ctx); err != nil {
			cfg.Logger.Warn("no migrations can come to this node", "err", err)
		}
	}()
	inf := dynamicinformer.NewFilteredDynamicSharedInformerFactory(cfg.Dynamic, 10*time.Minute, metav1.NamespaceAll, nil).ForResource(migrations).Informer()
	onChange := func(obj any) {
		if m, ok := toMigration(obj); ok {
			h.observe(ctx, m)
		}
	}
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onChange,
		UpdateFunc: func(_, obj any) { onChange(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if m, ok := toMigration(obj); ok {
				h.stop(m.UID)
			}
		},
	})
	inf.Run(ctx.Done())
	return nil
}

func toMigration(obj any) (*computev1alpha1.VirtualMachineMigration, bool) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, false
	}
	m := &computev1alpha1.VirtualMachineMigration{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, m); err != nil {
		return nil, false
	}
	return m, true
}

func (h *Handler) getMigration(ctx context.Context, ns, name string) (*computev1alpha1.VirtualMachineMigration, error) {
	u, err := h.cfg.Dynamic.Resource(migrations).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	m, ok := toMigration(u)
	if !ok {
		return nil, fmt.Errorf("migration %s/%s does not decode", ns, name)
	}
	return m, nil
}

// observe starts driving a migration leaving this node once its target is
// ready, and cancels one that is being deleted.
func (h *Handler) observe(ctx context.Context, m *computev1alpha1.VirtualMachineMigration) {
	if m.Status.TargetNode == h.cfg.NodeName && m.Status.Phase == computev1alpha1.MigrationSucceeded &&
		m.Status.CompletionTime != nil && time.Since(m.Status.CompletionTime.Time) < movedGrace {
		h.markMoved(m.Status.VMIP, h.cfg.NodeName) // the guest runs here now
	}
	if m.Status.SourceNode != h.cfg.NodeName {
		return
	}
	if m.DeletionTimestamp != nil || m.Status.Phase.Finished() {
		h.stop(m.UID)
		return
	}
	if m.Status.Phase != computev1alpha1.MigrationTargetReady {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.driving[m.UID]; ok {
		return
	}
	dctx, cancel := context.WithCancel(ctx)
	h.driving[m.UID] = cancel
	go func() {
		defer cancel()
		h.drive(dctx, m)
	}()
}

func (h *Handler) stop(uid types.UID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cancel, ok := h.driving[uid]; ok {
		cancel()
		delete(h.driving, uid)
	}
}

// patchStatus merges st into the migration's status.
func (h *Handler) patchStatus(ctx context.Context, m *computev1alpha1.VirtualMachineMigration, st map[string]any) error {
	b, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	_, err = h.cfg.Dynamic.Resource(migrations).Namespace(m.Namespace).Patch(ctx, m.Name, types.MergePatchType, b, metav1.PatchOptions{}, "status")
	return err
}

// drive migrates the VM out of its launcher on this node.
func (h *Handler) drive(ctx context.Context, m *computev1alpha1.VirtualMachineMigration) {
	log := h.cfg.Logger.With("migration", m.Namespace+"/"+m.Name, "vm", m.Spec.VMName, "target", m.Status.TargetNode)
	began := time.Now()
	// Status writes must land even after ctx is cancelled.
	wctx := context.WithoutCancel(ctx)
	finish := func(phase computev1alpha1.VirtualMachineMigrationPhase, msg string, p *migration.Progress) {
		st := map[string]any{"phase": phase, "message": msg, "completionTime": metav1.Now(), "totalMillis": time.Since(began).Milliseconds()}
		if p != nil {
			st["progress"] = progressStatus(*p)
			st["downtimeMillis"] = p.Downtime.Milliseconds()
		}
		if err := h.patchStatus(wctx, m, st); err != nil && !apierrors.IsNotFound(err) {
			log.Warn("could not record the migration's end", "phase", phase, "err", err)
		}
		log.Info("migration ended", "phase", phase, "message", msg)
	}
	if err := h.patchStatus(ctx, m, map[string]any{"phase": computev1alpha1.MigrationRunning, "message": "copying the disks and memory"}); err != nil {
		log.Warn("migration status", "err", err)
		return
	}
	pid, err := h.launcherPID(ctx, m.Namespace, m.Status.SourcePod)
	if err != nil {
		finish(computev1alpha1.MigrationFailed, "source launcher: "+err.Error(), nil)
		return
	}
	targetAddr, err := h.nodeAddress(ctx, m.Status.TargetNode)
	if err != nil {
		finish(computev1alpha1.MigrationFailed, "target node: "+err.Error(), nil)
		return
	}
	runDir := containerRunDir(pid)
	const memSock, nbdSock = "mig-mem.sock", "mig-nbd.sock"
	for local, remote := range map[string]string{memSock: launcher.MigrateInSocket, nbdSock: launcher.NBDSocket} {
		l, err := outbound(ctx, runDir, local, targetAddr, tunnelHeader{Namespace: m.Namespace, Name: m.Name, UID: string(m.UID), Socket: remote})
		if err != nil {
			finish(computev1alpha1.MigrationFailed, err.Error(), nil)
			return
		}
		defer l.Close()
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	mon, err := qmp.Dial(qctx, filepath.Join(runDir, launcher.AdminQMPSocketName))
	cancel()
	if err != nil {
		finish(computev1alpha1.MigrationFailed, "source QEMU's QMP: "+err.Error(), nil)
		return
	}
	defer mon.Close()
	var last time.Time
	report := func(p migration.Progress) {
		if time.Since(last) < 500*time.Millisecond && p.Stage != "completed" {
			return
		}
		last = time.Now()
		if err := h.patchStatus(ctx, m, map[string]any{"progress": progressStatus(p)}); err != nil {
			log.Debug("migration progress", "err", err)
		}
	}
	inRun := launcher.DefaultRunDir
	p, err := migration.Run(ctx, mon, migration.Target{
		MemorySocket: filepath.Join(inRun, memSock),
		NBDSocket:    filepath.Join(inRun, nbdSock),
		Disks:        []string{launcher.DiskDevice(0)},
	}, migration.Options{}, report)
	switch {
	case err == nil:
		h.markMoved(m.Status.VMIP, m.Status.TargetNode) // route it there now
		finish(computev1alpha1.MigrationSucceeded, fmt.Sprintf("the VM runs on %s (downtime %s)", m.Status.TargetNode, p.Downtime), &p)
	case ctx.Err() != nil:
		finish(computev1alpha1.MigrationCancelled, "cancelled; the VM runs on "+h.cfg.NodeName, &p)
	default:
		finish(computev1alpha1.MigrationFailed, err.Error()+"; the VM runs on "+h.cfg.NodeName, &p)
	}
}

// nodeAddress is the host:port of a node's migration tunnel.
func (h *Handler) nodeAddress(ctx context.Context, node string) (string, error) {
	n, err := h.cfg.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	ip := n.Annotations[overlay.AnnotationNodeIP]
	if ip == "" {
		for _, a := range n.Status.Addresses {
			if a.Type == "InternalIP" {
				ip = a.Address
			}
		}
	}
	if ip == "" {
		return "", fmt.Errorf("node %s has no address", node)
	}
	return net.JoinHostPort(ip, fmt.Sprint(TunnelPort)), nil
}

// progressStatus is Progress as the status' progress field.
func progressStatus(p migration.Progress) map[string]any {
	pct := int64(0)
	switch {
	case p.Stage == "completed":
		pct = 100
	case p.MemoryTotal > 0:
		// Disks are done once memory moves; memory is the rest.
		pct = 50 + 49*(p.MemoryTotal-p.MemoryRemaining)/p.MemoryTotal
	case p.DiskTotal > 0:
		pct = 50 * p.DiskDone / p.DiskTotal
	}
	return map[string]any{
		"stage": p.Stage, "diskTotalBytes": p.DiskTotal, "diskDoneBytes": p.DiskDone,
		"memoryTotalBytes": p.MemoryTotal, "memoryTransferredBytes": p.MemoryTransferred,
		"memoryRemainingBytes": p.MemoryRemaining, "passes": p.Passes, "percent": pct,
	}
}
