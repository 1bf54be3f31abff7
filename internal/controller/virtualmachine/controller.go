package virtualmachine

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/finalizer"
	"github.com/strata-cloud/strata/internal/network/cni"
)

// Reconciler makes each VirtualMachine's launcher pod match its run strategy.
type Reconciler struct {
	Client  client.Client
	Options LauncherOptions
	// Exec runs `strata-launcher volume` in launcher pods to hot-plug
	// volumes; SetupWithManager makes one from the manager's config.
	Exec Executor
}

// SetupWithManager registers the reconciler for VMs and their pods.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Exec == nil {
		ex, err := NewExecutor(mgr.GetConfig())
		if err != nil {
			return err
		}
		r.Exec = ex
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("virtualmachine").
		For(&computev1alpha1.VirtualMachine{}).
		Owns(&corev1.Pod{}).
		Owns(&corev1.Secret{}).
		Watches(&storagev1alpha1.Image{}, handler.EnqueueRequestsFromMapFunc(r.vmsOfImage)).
		Watches(&storagev1alpha1.Volume{}, handler.EnqueueRequestsFromMapFunc(r.vmsOfVolume)).
		Watches(&networkingv1alpha1.Port{}, handler.EnqueueRequestsFromMapFunc(r.vmsOfPort)).
		Watches(&computev1alpha1.VirtualMachineMigration{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			m := o.(*computev1alpha1.VirtualMachineMigration)
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Spec.VMName}}}
		})).
		Complete(r)
}

// vmsOfImage finds the VMs of an image's namespace that boot from it.
func (r *Reconciler) vmsOfImage(ctx context.Context, obj client.Object) []reconcile.Request {
	var vms computev1alpha1.VirtualMachineList
	if err := r.Client.List(ctx, &vms, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, vm := range vms.Items {
		if vm.Spec.Image == obj.GetName() {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: vm.Namespace, Name: vm.Name}})
		}
	}
	return out
}

// Reconcile brings one VM's pod and status in line.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	vm := &computev1alpha1.VirtualMachine{}
	if err := r.Client.Get(ctx, req.NamespacedName, vm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if vm.DeletionTimestamp != nil {
		return r.finalize(ctx, vm)
	}
	if err := finalizer.Ensure(ctx, r.Client, vm, FinalizerDisks); err != nil {
		return ctrl.Result{}, err
	}
	var problem *Problem
	var flavor *computev1alpha1.Flavor
	if vm.Spec.Flavor != "" {
		flavor = &computev1alpha1.Flavor{}
		err := r.Client.Get(ctx, types.NamespacedName{Name: vm.Spec.Flavor}, flavor)
		switch {
		case apierrors.IsNotFound(err):
			flavor = nil
			problem = &Problem{"FlavorNotFound", fmt.Sprintf("flavor %q does not exist (kubectl get flavors)", vm.Spec.Flavor)}
		case err != nil:
			return ctrl.Result{}, err
		}
	}
	size, err := ResolveSize(vm, flavor)
	if err != nil && problem == nil {
		problem = &Problem{"InvalidSpec", err.Error()}
	}
	image := &storagev1alpha1.Image{}
	waiting, waitingReason := "", "ImageNotReady"
	// A VM booting from a volume has no image.
	err = nil
	if vm.Spec.RootVolume == "" {
		err = r.Client.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: vm.Spec.Image}, image)
	}
	switch {
	case vm.Spec.RootVolume != "":
	case apierrors.IsNotFound(err):
		if problem == nil {
			problem = &Problem{"ImageNotFound", fmt.Sprintf("image %q does not exist in namespace %s (strata image upload %s FILE -n %s)", vm.Spec.Image, vm.Namespace, vm.Spec.Image, vm.Namespace)}
		}
	case err != nil:
		return ctrl.Result{}, err
	case image.Status.Phase == storagev1alpha1.ImageError:
		if problem == nil {
			problem = &Problem{"ImageError", fmt.Sprintf("image %q failed: %s", vm.Spec.Image, image.Status.Message)}
		}
	case image.Status.Phase != storagev1alpha1.ImageActive || image.Status.Reference == "":
		waiting = fmt.Sprintf("image %q is not Active yet (%s)", vm.Spec.Image, image.Status.Phase)
	}

	var publicKeys []string
	for _, name := range vm.Spec.KeyPairs {
		kp := &computev1alpha1.KeyPair{}
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: name}, kp)
		switch {
		case apierrors.IsNotFound(err):
			if problem == nil {
				problem = &Problem{"KeyPairNotFound", fmt.Sprintf("key pair %q does not exist in namespace %s (strata keypair create %s -n %s)", name, vm.Namespace, name, vm.Namespace)}
			}
		case err != nil:
			return ctrl.Result{}, err
		default:
			publicKeys = append(publicKeys, kp.Spec.PublicKey)
		}
	}

	// A tenant network: the VM's Port, which must have its address
	// before the launcher starts.
	port, portWaiting, portProblem, err := r.tenantPort(ctx, vm)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem == nil {
		problem = portProblem
	}
	if waiting == "" && portWaiting != "" {
		waiting, waitingReason = portWaiting, "PortNotReady"
	}

	// Volumes: the root volume must be usable before anything starts;
	// the others must be too when the launcher pod is made, and are
	// hot-plugged (or report their own problem) while it runs.
	var rootVol *vmVolume
	if vm.Spec.RootVolume != "" {
		rv, err := r.lookupVolume(ctx, vm, vm.Spec.RootVolume)
		if err != nil {
			return ctrl.Result{}, err
		}
		rootVol = &rv
		if rv.Problem != "" && problem == nil {
			problem = &Problem{"RootVolumeNotUsable", rv.Problem}
		}
		if rv.Waiting != "" && waiting == "" {
			waiting, waitingReason = rv.Waiting, "VolumeNotReady"
		}
	}
	var vols []vmVolume
	for _, sv := range vm.Spec.Volumes {
		v, err := r.lookupVolume(ctx, vm, sv.Volume)
		if err != nil {
			return ctrl.Result{}, err
		}
		vols = append(vols, v)
	}

	pod := &corev1.Pod{}
	err = r.Client.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: ActivePodName(vm)}, pod)
	switch {
	case apierrors.IsNotFound(err):
		pod = nil
	case err != nil:
		return ctrl.Result{}, err
	case !metav1.IsControlledBy(pod, vm):
		problem = &Problem{"PodNameTaken", fmt.Sprintf("pod %s exists and does not belong to this VM; delete or rename it", pod.Name)}
		pod = nil
	}

	all := vols
	if rootVol != nil {
		all = append([]vmVolume{*rootVol}, vols...)
	}
	volNode, nodeProblem := volumesNode(vm, all)
	if pod == nil || pod.Spec.NodeName == "" {
		// Starting: every volume must be usable, on one node.
		if problem == nil && nodeProblem != nil {
			problem = nodeProblem
		}
		for _, v := range vols {
			if problem == nil && v.Problem != "" {
				problem = &Problem{"VolumeNotUsable", v.Problem}
			}
			if waiting == "" && v.Waiting != "" {
				waiting, waitingReason = v.Waiting, "VolumeNotReady"
			}
		}
	}

	if problem == nil {
		act := action(vm, pod)
		if act == keep && pod != nil && pod.DeletionTimestamp == nil && pod.Annotations[AnnotationSize] != size.String() &&
			vm.Spec.RunStrategy != computev1alpha1.RunStrategyHalted {
			act = remove // resized (another flavor): restart with the new size
		}
		if act == create && waiting != "" {
			act = keep // the image watch brings us back
		}
		switch act {
		case create:
			// Another launcher pod of this VM (a migration's target that a
			// stale copy of the VM's status does not name yet, or one still
			// going away) means this is not the moment: never two QEMUs.
			if other, err := r.otherLauncher(ctx, vm); err != nil {
				return ctrl.Result{}, err
			} else if other != "" {
				return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
			}
			if err := r.applySeed(ctx, vm, publicKeys); err != nil {
				return ctrl.Result{}, err
			}
			pod = LauncherPod(vm, size, image.Status.Reference, r.Options)
			addVolumes(pod, rootVol, vols, volNode, r.Options)
			if port != nil {
				UsePort(pod, port)
			} else if r.routedHere(ctx, vm) {
				// It migrated here with another node's address: this node
				// must route it (internal/agent/vmhandler), and the guest's
				// lease is that of the address's own node.
				pod.Annotations[cni.AnnotationRoutedIP] = vm.Status.IPs[0]
				if lease, err := LeaseOptions(ctx, r.Client, netip.MustParseAddr(vm.Status.IPs[0])); err == nil {
					AddLease(pod, lease)
				}
			}
			if err := r.Client.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
				return ctrl.Result{}, fmt.Errorf("create launcher pod: %w", err)
			}
		case remove:
			if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("delete launcher pod: %w", err)
			}
			pod = nil
		}
	}

	st := Status(vm, pod, size, problem)
	if pod == nil && problem == nil && waiting != "" {
		st = Status(vm, nil, size, nil)
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: waitingReason, Message: waiting, ObservedGeneration: vm.Generation})
	}
	if port != nil && len(port.Status.FixedIPs) > 0 {
		st.IPs = portIPs(port) // the port's, whatever the pod reports
	}
	var requeue ctrl.Result
	if problem == nil || pod != nil {
		running := st.Phase == computev1alpha1.VirtualMachineRunning
		var again bool
		st.Volumes, again, err = r.volumeStatus(ctx, vm, pod, running, vols)
		if err != nil {
			return ctrl.Result{}, err
		}
		if again {
			requeue.RequeueAfter = 2 * time.Second
		}
	}
	if st.Phase == computev1alpha1.VirtualMachineRunning {
		var migs computev1alpha1.VirtualMachineMigrationList
		if err := r.Client.List(ctx, &migs, client.InNamespace(vm.Namespace)); err == nil {
			for _, m := range migs.Items {
				if m.Spec.VMName == vm.Name && m.Status.Phase != "" && !m.Status.Phase.Finished() {
					st.Phase = computev1alpha1.VirtualMachineMigrating // still Ready: the guest runs
				}
			}
		}
	}
	if !reflect.DeepEqual(st, vm.Status) {
		vm = vm.DeepCopy()
		vm.Status = st
		if err := r.Client.Status().Update(ctx, vm); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	return requeue, nil
}

// routedHere reports whether vm's address lies outside the pod range of
// the node it is pinned to.
func (r *Reconciler) routedHere(ctx context.Context, vm *computev1alpha1.VirtualMachine) bool {
	return vm.Status.NodeName != "" && len(vm.Status.IPs) > 0 && !InNodeRange(ctx, r.Client, vm.Status.NodeName, vm.Status.IPs[0])
}

// LeaseOptions are the launcher's --nic options that give the guest ip
// with the prefix and gateway of the node whose pod range holds it.
func LeaseOptions(ctx context.Context, c client.Reader, ip netip.Addr) (string, error) {
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return "", err
	}
	for _, n := range nodes.Items {
		if p, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil && p.Contains(ip) {
			return fmt.Sprintf("address=%s,gateway=%s", netip.PrefixFrom(ip, p.Bits()), p.Masked().Addr().Next()), nil
		}
	}
	return "", fmt.Errorf("no node's pod range holds the VM's address %s", ip)
}

// AddLease appends lease (LeaseOptions) to the launcher's pod-network --nic.
func AddLease(pod *corev1.Pod, lease string) {
	args := pod.Spec.Containers[0].Args
	for i, a := range args {
		if i > 0 && args[i-1] == "--nic" && strings.Contains(a, "pod=") {
			args[i] = a + "," + lease
		}
	}
}

// InNodeRange reports whether ip is in node's pod range (false when either
// cannot be read).
func InNodeRange(ctx context.Context, c client.Reader, node, ip string) bool {
	n := &corev1.Node{}
	if err := c.Get(ctx, types.NamespacedName{Name: node}, n); err != nil {
		return false
	}
	p, err1 := netip.ParsePrefix(n.Spec.PodCIDR)
	a, err2 := netip.ParseAddr(ip)
	return err1 == nil && err2 == nil && p.Contains(a)
}

// otherLauncher names a launcher pod of vm that exists, or "".
func (r *Reconciler) otherLauncher(ctx context.Context, vm *computev1alpha1.VirtualMachine) (string, error) {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(vm.Namespace), client.MatchingLabels{LabelVM: vm.Name, LabelRole: "launcher"}); err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		if metav1.IsControlledBy(&p, vm) {
			return p.Name, nil
		}
	}
	return "", nil
}

// ActivePodName is the name of the launcher pod that runs vm now: the one
// in its status (after a migration, the target's), else the usual name.
func ActivePodName(vm *computev1alpha1.VirtualMachine) string {
	if vm.Status.LauncherPod != "" {
		return vm.Status.LauncherPod
	}
	return LauncherPodName(vm.Name)
}

// FinalizerDisks holds a deleted VM until its disks are removed from its node.
const FinalizerDisks = "compute.strata.io/disks"

// finalize deletes a VM's launcher pod, then removes its disks on its node
// with a cleanup pod, then lets the VM go. A VM whose node is gone (or that
// never ran) has nothing to clean.
func (r *Reconciler) finalize(ctx context.Context, vm *computev1alpha1.VirtualMachine) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(vm, FinalizerDisks) {
		return ctrl.Result{}, nil
	}
	// Every launcher pod (a migration's target too) goes first: QEMU must
	// let go of the disks.
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(vm.Namespace), client.MatchingLabels{LabelVM: vm.Name, LabelRole: "launcher"}); err != nil {
		return ctrl.Result{}, err
	}
	running := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !metav1.IsControlledBy(pod, vm) {
			continue
		}
		running++
		if pod.DeletionTimestamp == nil {
			if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, err
			}
		}
	}
	if running > 0 {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	done := vm.Status.NodeName == ""
	if !done {
		node := &corev1.Node{}
		err := r.Client.Get(ctx, types.NamespacedName{Name: vm.Status.NodeName}, node)
		switch {
		case apierrors.IsNotFound(err):
			done = true
		case err != nil:
			return ctrl.Result{}, err
		}
	}
	if !done {
		cleanup := &corev1.Pod{}
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: CleanupPodName(vm.Name)}, cleanup)
		switch {
		case apierrors.IsNotFound(err):
			if err := r.Client.Create(ctx, CleanupPod(vm, r.Options)); err != nil && !apierrors.IsAlreadyExists(err) {
				return ctrl.Result{}, fmt.Errorf("create disk cleanup pod: %w", err)
			}
			return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
		case err != nil:
			return ctrl.Result{}, err
		}
		switch cleanup.Status.Phase {
		case corev1.PodSucceeded:
			done = true
		case corev1.PodFailed:
			// Try again with a new pod.
			if err := r.Client.Delete(ctx, cleanup); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, err
			}
			return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
		default:
			return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
		}
	}
	controllerutil.RemoveFinalizer(vm, FinalizerDisks)
	if err := r.Client.Update(ctx, vm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// applySeed creates or updates the VM's seed Secret; a new launcher pod
// reads it at start.
func (r *Reconciler) applySeed(ctx context.Context, vm *computev1alpha1.VirtualMachine, publicKeys []string) error {
	want, err := SeedSecret(vm, publicKeys)
	if err != nil {
		return err
	}
	have := &corev1.Secret{}
	err = r.Client.Get(ctx, client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		err = r.Client.Create(ctx, want)
	case err == nil && !reflect.DeepEqual(have.Data, want.Data):
		have.Data = want.Data
		err = r.Client.Update(ctx, have)
	}
	if err != nil {
		return fmt.Errorf("seed secret: %w", err)
	}
	return nil
}

type podAction int

const (
	keep podAction = iota
	create
	remove
)

// action is what the run strategy asks of the launcher pod. A finished pod
// is removed before a new one is created (next reconcile), so a VM never
// has two.
func action(vm *computev1alpha1.VirtualMachine, pod *corev1.Pod) podAction {
	finished := pod != nil && (pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed)
	switch vm.Spec.RunStrategy {
	case computev1alpha1.RunStrategyHalted:
		if pod != nil && pod.DeletionTimestamp == nil {
			return remove
		}
	case computev1alpha1.RunStrategyManual:
		// Started once; after that only the start/stop actions act.
		if pod == nil && vm.Status.LauncherPod == "" {
			return create
		}
	case computev1alpha1.RunStrategyRerunOnFailure:
		if pod == nil && vm.Status.Phase != computev1alpha1.VirtualMachineStopped {
			return create
		}
		if pod != nil && pod.Status.Phase == corev1.PodFailed && pod.DeletionTimestamp == nil {
			return remove
		}
	default: // Always
		if pod == nil {
			return create
		}
		if finished && pod.DeletionTimestamp == nil {
			return remove
		}
	}
	return keep
}
