// Package vmmigration reconciles VirtualMachineMigrations on the server:
// it checks the VM can move, creates the target launcher pod (a copy of
// the running one, started with --incoming and told to keep the guest's
// address), marks the migration TargetReady once that pod runs, and — when
// the source node's agent (internal/agent/vmhandler), which moves the
// guest, reports success — makes the target pod the VM's launcher, marks
// it to carry the guest's address (AnnotationRoutedIP) and deletes the
// source pod. A failed or cancelled migration loses its target pod; the VM
// keeps running where it was.
package vmmigration

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/finalizer"
	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
	"github.com/strata-cloud/strata/internal/network/cni"
)

// LabelMigration on a target launcher pod names its migration.
const LabelMigration = "compute.strata.io/migration"

// Finalizer keeps a migration until its target pod is dealt with.
const Finalizer = "compute.strata.io/migration"

// cancelWait is how long a deleted migration waits for the source node to
// report the cancellation before its target pod goes anyway.
const cancelWait = time.Minute

// Reconciler runs migrations.
type Reconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler for migrations and their pods.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("virtualmachinemigration").
		For(&computev1alpha1.VirtualMachineMigration{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if m := o.GetLabels()[LabelMigration]; m != "" {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: m}}}
			}
			return nil
		})).
		Complete(r)
}

// Reconcile moves one migration along.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	m := &computev1alpha1.VirtualMachineMigration{}
	if err := r.Client.Get(ctx, req.NamespacedName, m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if m.DeletionTimestamp != nil {
		return r.finalize(ctx, m)
	}
	if err := finalizer.Ensure(ctx, r.Client, m, Finalizer); err != nil {
		return ctrl.Result{}, err
	}
	switch m.Status.Phase {
	case "":
		return r.start(ctx, m)
	case computev1alpha1.MigrationPending, computev1alpha1.MigrationScheduling:
		return r.waitForTarget(ctx, m)
	case computev1alpha1.MigrationTargetReady, computev1alpha1.MigrationRunning:
		return r.watchTarget(ctx, m)
	case computev1alpha1.MigrationSucceeded:
		return ctrl.Result{}, r.switchOver(ctx, m)
	default: // Failed, Cancelled
		return ctrl.Result{}, r.deleteTarget(ctx, m)
	}
}

func (r *Reconciler) setStatus(ctx context.Context, m *computev1alpha1.VirtualMachineMigration, change func(*computev1alpha1.VirtualMachineMigrationStatus)) error {
	m = m.DeepCopy()
	change(&m.Status)
	return client.IgnoreNotFound(r.Client.Status().Update(ctx, m))
}

func (r *Reconciler) fail(ctx context.Context, m *computev1alpha1.VirtualMachineMigration, msg string) (ctrl.Result, error) {
	err := r.setStatus(ctx, m, func(s *computev1alpha1.VirtualMachineMigrationStatus) {
		s.Phase, s.Message = computev1alpha1.MigrationFailed, msg
		now := metav1.Now()
		s.CompletionTime = &now
	})
	return ctrl.Result{}, err
}

// start checks the VM and creates the target pod.
func (r *Reconciler) start(ctx context.Context, m *computev1alpha1.VirtualMachineMigration) (ctrl.Result, error) {
	vm := &computev1alpha1.VirtualMachine{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Spec.VMName}, vm)
	if apierrors.IsNotFound(err) {
		return r.fail(ctx, m, fmt.Sprintf("virtual machine %q not found in namespace %s", m.Spec.VMName, m.Namespace))
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if vm.Status.Phase != computev1alpha1.VirtualMachineRunning || len(vm.Status.IPs) == 0 {
		return r.fail(ctx, m, fmt.Sprintf("virtual machine %s is %s, not Running: only a running VM migrates", vm.Name, vm.Status.Phase))
	}
	if vols := vm.VolumeNames(); len(vols) > 0 {
		return r.fail(ctx, m, fmt.Sprintf("virtual machine %s has volumes on node %s (%s): a node's volumes cannot move, so the VM cannot either; detach them first", vm.Name, vm.Status.NodeName, strings.Join(vols, ", ")))
	}
	var others computev1alpha1.VirtualMachineMigrationList
	if err := r.Client.List(ctx, &others, client.InNamespace(m.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	for _, o := range others.Items {
		if o.Name != m.Name && o.Spec.VMName == m.Spec.VMName && o.Status.Phase != "" && !o.Status.Phase.Finished() {
			return r.fail(ctx, m, fmt.Sprintf("virtual machine %s is already migrating (%s)", vm.Name, o.Name))
		}
	}
	src := &corev1.Pod{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: vm.Status.LauncherPod}, src); err != nil {
		return r.fail(ctx, m, fmt.Sprintf("launcher pod of %s: %v", vm.Name, err))
	}
	if m.Spec.TargetNode == src.Spec.NodeName {
		return r.fail(ctx, m, fmt.Sprintf("virtual machine %s already runs on %s", vm.Name, src.Spec.NodeName))
	}
	if m.Spec.TargetNode != "" {
		if err := r.Client.Get(ctx, types.NamespacedName{Name: m.Spec.TargetNode}, &corev1.Node{}); err != nil {
			return r.fail(ctx, m, fmt.Sprintf("target node %q: %v", m.Spec.TargetNode, err))
		}
	}
	// The guest keeps its address, gateway and prefix: those of the node
	// it first got them on (its own routed address if it migrated before).
	ip, err := netip.ParseAddr(vm.Status.IPs[0])
	if err != nil {
		return r.fail(ctx, m, fmt.Sprintf("virtual machine %s has no usable address (%q)", vm.Name, vm.Status.IPs[0]))
	}
	lease, err := virtualmachine.LeaseOptions(ctx, r.Client, ip)
	if err != nil {
		return r.fail(ctx, m, err.Error())
	}
	target := TargetPod(m, vm, src, lease)
	if err := r.Client.Create(ctx, target); err != nil && !apierrors.IsAlreadyExists(err) {
		return ctrl.Result{}, fmt.Errorf("create target pod: %w", err)
	}
	err = r.setStatus(ctx, m, func(s *computev1alpha1.VirtualMachineMigrationStatus) {
		now := metav1.Now()
		s.Phase, s.Message = computev1alpha1.MigrationScheduling, "waiting for the target launcher pod "+target.Name
		s.SourceNode, s.SourcePod, s.TargetPod, s.VMIP, s.StartTime = src.Spec.NodeName, src.Name, target.Name, ip.String(), &now
	})
	return ctrl.Result{}, err
}

// TargetPod is the migration's target launcher pod: the source pod's spec,
// started --incoming, its guest keeping its address (lease: the --nic
// options address=…,gateway=…), on another node.
func TargetPod(m *computev1alpha1.VirtualMachineMigration, vm *computev1alpha1.VirtualMachine, src *corev1.Pod, lease string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            fmt.Sprintf("vm-%s-%s", vm.Name, strings.ToLower(string(m.UID))[:5]),
			Namespace:       src.Namespace,
			Labels:          map[string]string{},
			Annotations:     map[string]string{},
			OwnerReferences: src.OwnerReferences, // the VM's: it runs the VM once switched over
		},
		Spec: *src.Spec.DeepCopy(),
	}
	for k, v := range src.Labels {
		p.Labels[k] = v
	}
	p.Labels[LabelMigration] = m.Name
	for k, v := range src.Annotations {
		p.Annotations[k] = v
	}
	// The pod holds the guest's address on the target too (a /32 from
	// another node's range), so Services keep pointing at the VM; the
	// target node routes it only once the guest runs there.
	p.Annotations[cni.AnnotationIP] = vm.Status.IPs[0]
	delete(p.Annotations, cni.AnnotationRoutedIP)
	p.Spec.NodeName = ""
	c := &p.Spec.Containers[0]
	c.Args = slices.DeleteFunc(slices.Clone(c.Args), func(a string) bool { return a == "--incoming" })
	for i, a := range c.Args { // a lease from an earlier migration goes
		if i > 0 && c.Args[i-1] == "--nic" {
			c.Args[i], _, _ = strings.Cut(a, ",address=")
		}
	}
	virtualmachine.AddLease(p, lease)
	c.Args = append(c.Args, "--incoming")
	term := corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpNotIn, Values: []string{src.Spec.NodeName}}}}
	if m.Spec.TargetNode != "" {
		term.MatchFields[0].Operator, term.MatchFields[0].Values = corev1.NodeSelectorOpIn, []string{m.Spec.TargetNode}
	}
	p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term}},
	}}
	return p
}

func (r *Reconciler) targetPod(ctx context.Context, m *computev1alpha1.VirtualMachineMigration) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Status.TargetPod}, p)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return p, err
}

// waitForTarget marks the migration TargetReady when the target launcher
// runs, or Failed when it cannot.
func (r *Reconciler) waitForTarget(ctx context.Context, m *computev1alpha1.VirtualMachineMigration) (ctrl.Result, error) {
	p, err := r.targetPod(ctx, m)
	if err != nil {
		return ctrl.Result{}, err
	}
	if p == nil {
		return r.fail(ctx, m, "the target launcher pod "+m.Status.TargetPod+" is gone")
	}
	if msg := podFailure(p); msg != "" {
		r.deleteTarget(ctx, m)
		return r.fail(ctx, m, msg+"; the VM keeps running on "+m.Status.SourceNode)
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running != nil {
			err := r.setStatus(ctx, m, func(s *computev1alpha1.VirtualMachineMigrationStatus) {
				s.Phase, s.TargetNode = computev1alpha1.MigrationTargetReady, p.Spec.NodeName
				s.Message = "the target QEMU on " + p.Spec.NodeName + " waits for the guest"
			})
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
}

// podFailure says why a target pod cannot run, or "".
func podFailure(p *corev1.Pod) string {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return "the target launcher pod " + p.Name + " ended (" + string(p.Status.Phase) + ")"
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return "no node can take the VM: " + c.Message
		}
	}
	return ""
}

// watchTarget fails the migration when its target pod dies under it (the
// source node notices too, as its streams break).
func (r *Reconciler) watchTarget(ctx context.Context, m *computev1alpha1.VirtualMachineMigration) (ctrl.Result, error) {
	p, err := r.targetPod(ctx, m)
	if err != nil {
		return ctrl.Result{}, err
	}
	if p == nil || podFailure(p) != "" {
		return r.fail(ctx, m, "the target launcher pod failed; the VM keeps running on "+m.Status.SourceNode)
	}
	return ctrl.Result{}, nil
}

// switchOver makes the target pod the VM's launcher and removes the source.
func (r *Reconciler) switchOver(ctx context.Context, m *computev1alpha1.VirtualMachineMigration) error {
	p, err := r.targetPod(ctx, m)
	if err != nil || p == nil {
		return err
	}
	if p.Annotations[cni.AnnotationRoutedIP] != m.Status.VMIP && !virtualmachine.InNodeRange(ctx, r.Client, p.Spec.NodeName, m.Status.VMIP) {
		patch := client.MergeFrom(p.DeepCopy())
		p.Annotations[cni.AnnotationRoutedIP] = m.Status.VMIP
		delete(p.Labels, LabelMigration)
		if err := r.Client.Patch(ctx, p, patch); err != nil {
			return err
		}
	}
	vm := &computev1alpha1.VirtualMachine{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Spec.VMName}, vm); err != nil {
		return client.IgnoreNotFound(err)
	}
	if vm.Status.LauncherPod != p.Name {
		vm.Status.LauncherPod, vm.Status.NodeName = p.Name, p.Spec.NodeName
		if err := r.Client.Status().Update(ctx, vm); err != nil {
			return err
		}
	}
	src := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Status.SourcePod}}
	return client.IgnoreNotFound(r.Client.Delete(ctx, src))
}

func (r *Reconciler) deleteTarget(ctx context.Context, m *computev1alpha1.VirtualMachineMigration) error {
	if m.Status.TargetPod == "" {
		return nil
	}
	vm := &computev1alpha1.VirtualMachine{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Spec.VMName}, vm); err == nil && vm.Status.LauncherPod == m.Status.TargetPod {
		return nil // it runs the VM now
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Status.TargetPod}}
	return client.IgnoreNotFound(r.Client.Delete(ctx, p))
}

// finalize cancels an unfinished migration: the source node sees the
// deletion and cancels QEMU's migration; the target pod goes once it has
// (or after cancelWait).
func (r *Reconciler) finalize(ctx context.Context, m *computev1alpha1.VirtualMachineMigration) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(m, Finalizer) {
		return ctrl.Result{}, nil
	}
	running := m.Status.Phase == computev1alpha1.MigrationTargetReady || m.Status.Phase == computev1alpha1.MigrationRunning
	if running && time.Since(m.DeletionTimestamp.Time) < cancelWait {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	if m.Status.Phase == computev1alpha1.MigrationSucceeded {
		if err := r.switchOver(ctx, m); err != nil {
			return ctrl.Result{}, err
		}
	} else if err := r.deleteTarget(ctx, m); err != nil {
		return ctrl.Result{}, err
	}
	controllerutil.RemoveFinalizer(m, Finalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Client.Update(ctx, m))
}
