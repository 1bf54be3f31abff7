package virtualmachinepool

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

// EventsName is the reporting controller of the pool's events.
const EventsName = "virtualmachinepool-controller"

// cacheWait bounds how long a reconcile waits for the informer cache to
// see its own creates and deletes, so the next one does not act twice.
const cacheWait = 10 * time.Second

// Reconciler keeps each VirtualMachinePool's VMs and revisions in line.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// SetupWithManager registers the reconciler for pools, their VMs and
// their revisions.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder(EventsName)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("virtualmachinepool").
		For(&computev1alpha1.VirtualMachinePool{}).
		Owns(&computev1alpha1.VirtualMachine{}).
		Owns(&appsv1.ControllerRevision{}).
		Complete(r)
}

// Reconcile takes one step of a pool's rollout and updates its status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &computev1alpha1.VirtualMachinePool{}
	if err := r.Client.Get(ctx, req.NamespacedName, pool); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if pool.DeletionTimestamp != nil {
		return ctrl.Result{}, nil // the garbage collector deletes the VMs and revisions
	}
	vms, err := r.liveVMs(ctx, pool)
	if err != nil {
		return ctrl.Result{}, err
	}
	revs, err := Revisions(ctx, r.Client, pool)
	if err != nil {
		return ctrl.Result{}, err
	}
	hash := TemplateHash(&pool.Spec.Template)
	surge, unavailable, limitsErr := Limits(pool)
	problem := validate(pool, limitsErr)
	updateRevision := pool.Status.UpdateRevision
	if problem == nil {
		if problem, err = r.ensureRevision(ctx, pool, hash, revs); err != nil {
			return ctrl.Result{}, ignoreTerminating(err)
		}
	}
	if problem == nil {
		updateRevision = RevisionName(pool.Name, hash)
		changes := Plan(Replicas(pool), surge, unavailable, hash, vms)
		if vms, err = r.apply(ctx, pool, hash, changes, vms); err != nil {
			return ctrl.Result{}, ignoreTerminating(err)
		}
		limit := 10
		if pool.Spec.RevisionHistoryLimit != nil {
			limit = int(*pool.Spec.RevisionHistoryLimit)
		}
		for _, rev := range RevisionsToPrune(revs, limit, hash, vms) {
			if err := r.Client.Delete(ctx, rev, client.Preconditions{UID: &rev.UID}); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("prune revision %s: %w", rev.Name, err)
			}
		}
	} else if c := meta.FindStatusCondition(pool.Status.Conditions, computev1alpha1.PoolProgressing); c == nil || c.Reason != problem.Reason || c.Message != problem.Message {
		r.Recorder.Eventf(pool, nil, corev1.EventTypeWarning, problem.Reason, "Reconcile", "%s", problem.Message)
	}

	st := Status(pool, vms, updateRevision, hash, unavailable, problem)
	if !reflect.DeepEqual(st, pool.Status) {
		pool = pool.DeepCopy()
		pool.Status = st
		if err := r.Client.Status().Update(ctx, pool); err != nil && !apierrors.IsConflict(err) {
			// A conflict: the pool changed since it was read, and that
			// change brings another reconcile.
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	return ctrl.Result{}, nil
}

// validate finds what the API server's rules cannot: a matchExpressions
// selector that does not select the template's labels, unusable limits.
func validate(pool *computev1alpha1.VirtualMachinePool, limitsErr error) *Problem {
	selector, err := metav1.LabelSelectorAsSelector(pool.Spec.Selector)
	switch {
	case err != nil:
		return &Problem{"InvalidSelector", fmt.Sprintf("spec.selector: %v", err)}
	case selector.Empty():
		return &Problem{"InvalidSelector", "spec.selector is empty: it would select every VM"}
	case !selector.Matches(labels.Set(pool.Spec.Template.Metadata.Labels)):
		return &Problem{"InvalidSelector", fmt.Sprintf("spec.selector %q does not match the template's labels %v", metav1.FormatLabelSelector(pool.Spec.Selector), labels.Set(pool.Spec.Template.Metadata.Labels))}
	case limitsErr != nil:
		return &Problem{"InvalidStrategy", "spec.strategy.rollingUpdate." + limitsErr.Error()}
	}
	return nil
}

// liveVMs lists the pool's VMs: controlled by it and not being deleted.
func (r *Reconciler) liveVMs(ctx context.Context, pool *computev1alpha1.VirtualMachinePool) ([]*computev1alpha1.VirtualMachine, error) {
	var list computev1alpha1.VirtualMachineList
	if err := r.Client.List(ctx, &list, client.InNamespace(pool.Namespace), client.MatchingLabels{computev1alpha1.PoolLabel: pool.Name}); err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	return slices.DeleteFunc(controlled(list.Items, pool), func(vm *computev1alpha1.VirtualMachine) bool {
		return vm.DeletionTimestamp != nil
	}), nil
}

// Revisions lists a pool's ControllerRevisions, oldest first.
func Revisions(ctx context.Context, c client.Reader, pool *computev1alpha1.VirtualMachinePool) ([]*appsv1.ControllerRevision, error) {
	var list appsv1.ControllerRevisionList
	if err := c.List(ctx, &list, client.InNamespace(pool.Namespace), client.MatchingLabels{computev1alpha1.PoolLabel: pool.Name}); err != nil {
		return nil, fmt.Errorf("list controllerrevisions: %w", err)
	}
	revs := controlled(list.Items, pool)
	SortRevisions(revs)
	return revs, nil
}

// controlled keeps the listed objects whose controller is owner.
func controlled[T any, P interface {
	*T
	metav1.Object
}](items []T, owner metav1.Object) []P {
	var out []P
	for i := range items {
		if obj := P(&items[i]); metav1.IsControlledBy(obj, owner) {
			out = append(out, obj)
		}
	}
	return out
}

// ensureRevision records the current template as the newest revision:
// created, or (after a rollback to an older template) renumbered.
func (r *Reconciler) ensureRevision(ctx context.Context, pool *computev1alpha1.VirtualMachinePool, hash string, revs []*appsv1.ControllerRevision) (*Problem, error) {
	latest := LatestRevision(revs)
	want, err := NewRevision(pool, hash, latest+1)
	if err != nil {
		return nil, err
	}
	for _, rev := range revs {
		if rev.Name != want.Name {
			continue
		}
		if !bytes.Equal(rev.Data.Raw, want.Data.Raw) {
			return &Problem{"RevisionCollision", fmt.Sprintf("controllerrevision %s holds another template (a hash collision); change the template slightly", rev.Name)}, nil
		}
		if rev.Revision == latest {
			return nil, nil
		}
		rev = rev.DeepCopy()
		rev.Revision = latest + 1
		if err := r.Client.Update(ctx, rev); err != nil {
			return nil, fmt.Errorf("renumber revision %s: %w", rev.Name, err)
		}
		r.Recorder.Eventf(pool, rev, corev1.EventTypeNormal, "RollingUpdate", "Update", "Rolling back to the template of %s (now revision %d)", rev.Name, rev.Revision)
		return nil, nil
	}
	switch err := r.Client.Create(ctx, want); {
	case apierrors.IsAlreadyExists(err):
		// Created by a reconcile the cache has not caught up with, or
		// someone else's: the next reconcile sees which.
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("create revision %s: %w", want.Name, err)
	}
	verb := "Rolling out"
	if latest == 0 {
		verb = "Created"
	}
	r.Recorder.Eventf(pool, want, corev1.EventTypeNormal, "RollingUpdate", "Update", "%s revision %d (%s)", verb, want.Revision, want.Name)
	return nil, nil
}

// apply creates and deletes VMs, and returns the live VMs after it. It
// waits (briefly) until the cache shows the changes, so that the next
// reconcile does not repeat them.
func (r *Reconciler) apply(ctx context.Context, pool *computev1alpha1.VirtualMachinePool, hash string, changes Changes, vms []*computev1alpha1.VirtualMachine) ([]*computev1alpha1.VirtualMachine, error) {
	var waitFor []func(context.Context) (bool, error)
	for range changes.Create {
		vm := NewVM(pool, hash)
		if err := r.Client.Create(ctx, vm); err != nil {
			r.Recorder.Eventf(pool, nil, corev1.EventTypeWarning, "FailedCreate", "Create", "Error creating virtual machine: %v", err)
			return nil, fmt.Errorf("create VM: %w", err)
		}
		r.Recorder.Eventf(pool, vm, corev1.EventTypeNormal, "SuccessfulCreate", "Create", "Created virtual machine: %s", vm.Name)
		vms = append(vms, vm)
		key := client.ObjectKeyFromObject(vm)
		waitFor = append(waitFor, func(ctx context.Context) (bool, error) {
			err := r.Client.Get(ctx, key, &computev1alpha1.VirtualMachine{})
			return err == nil, client.IgnoreNotFound(err)
		})
	}
	for _, vm := range changes.Delete {
		if err := r.Client.Delete(ctx, vm, client.Preconditions{UID: &vm.UID}); client.IgnoreNotFound(err) != nil {
			r.Recorder.Eventf(pool, vm, corev1.EventTypeWarning, "FailedDelete", "Delete", "Error deleting virtual machine %s: %v", vm.Name, err)
			return nil, fmt.Errorf("delete VM %s: %w", vm.Name, err)
		}
		r.Recorder.Eventf(pool, vm, corev1.EventTypeNormal, "SuccessfulDelete", "Delete", "Deleted virtual machine: %s", vm.Name)
		vms = removeVM(vms, vm)
		key := client.ObjectKeyFromObject(vm)
		waitFor = append(waitFor, func(ctx context.Context) (bool, error) {
			got := &computev1alpha1.VirtualMachine{}
			err := r.Client.Get(ctx, key, got)
			return apierrors.IsNotFound(err) || (err == nil && (got.DeletionTimestamp != nil || got.UID != vm.UID)), client.IgnoreNotFound(err)
		})
	}
	for _, done := range waitFor {
		// A timeout means an outside change raced ours (someone deleted
		// the new VM...): the next reconcile sees it.
		_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, cacheWait, true, done)
	}
	return vms, nil
}

// ignoreTerminating drops the error of a create in a namespace being
// deleted: the pool goes with it.
func ignoreTerminating(err error) error {
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return nil
	}
	return err
}

func removeVM(vms []*computev1alpha1.VirtualMachine, gone *computev1alpha1.VirtualMachine) []*computev1alpha1.VirtualMachine {
	out := vms[:0:0]
	for _, vm := range vms {
		if vm.UID != gone.UID || vm.Name != gone.Name {
			out = append(out, vm)
		}
	}
	return out
}
