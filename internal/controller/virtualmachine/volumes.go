package virtualmachine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	kubescheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/vm/launcher"
)

// How a VM reaches its Volumes (see docs/vms.md, "Volumes"): QEMU opens
// the Volume's file (status.path, raw or qcow2) — never its loop device,
// which the container's device cgroup would refuse. The launcher pod
// mounts the node agent's volume directory (the parent of every Volume's
// directory) at VolumesDir, which is what lets a running launcher open a
// Volume attached later: a pod's volumes cannot change. Hot-plug and
// unplug go through `strata-launcher volume` in the launcher container
// (the exec subresource, as `strata vm pause`).

// VolumesDir is where the launcher container sees the node's Volumes.
const VolumesDir = "/var/lib/strata-vm/volumes"

// MaxVolumeSlots is the number of hot-pluggable PCIe root ports a launcher
// pod with volumes gets: the API's limit on spec.volumes.
const MaxVolumeSlots = 16

// AnnotationVolumes on a launcher pod lists the volumes it started with,
// as NAME=SLOT pairs separated by commas.
const AnnotationVolumes = "compute.strata.io/volumes"

// volumeMount is the name of the launcher pod's volume of the node's Volumes.
const volumeMount = "volumes"

// firstVolumeDisk is the guest's disk index of slot 0: the root disk is
// vda and the cloud-init seed vdb, both on the root bus, which the guest
// scans before the root ports.
const firstVolumeDisk = 2

// Target is the guest device name of the volume in slot.
func Target(slot int) string { return diskName(firstVolumeDisk + slot) }

// diskName is Linux's virtio-blk name of disk index i (vda..vdz, vdaa...).
func diskName(i int) string {
	name := ""
	for i++; i > 0; i = (i - 1) / 26 {
		name = string(rune('a'+(i-1)%26)) + name
	}
	return "vd" + name
}

// Executor runs a command in a pod's container and returns its standard
// output.
type Executor interface {
	Exec(ctx context.Context, namespace, pod, container string, command []string) (string, error)
}

// restExecutor execs through the API server (the pod exec subresource).
type restExecutor struct {
	rc   *rest.Config
	kube kubernetes.Interface
}

// NewExecutor execs with rc.
func NewExecutor(rc *rest.Config) (Executor, error) {
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &restExecutor{rc: rc, kube: kube}, nil
}

func (e *restExecutor) Exec(ctx context.Context, namespace, pod, container string, command []string) (string, error) {
	u := e.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true}, kubescheme.ParameterCodec).URL()
	ex, err := remotecommand.NewSPDYExecutor(e.rc, "POST", u)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return stdout.String(), fmt.Errorf("%s", strings.TrimPrefix(msg, "strata-launcher volume: "))
	}
	return stdout.String(), nil
}

// vmVolume is one of a VM's volumes, looked up.
type vmVolume struct {
	Name string
	// Volume is nil when it does not exist.
	Volume *storagev1alpha1.Volume
	// Problem makes it unusable (another user, an error...); Waiting says
	// what it still needs (the node is still making it).
	Problem, Waiting string
}

// node is where the volume is.
func (v vmVolume) node() string {
	if v.Volume == nil {
		return ""
	}
	return v.Volume.NodeName()
}

// hostDir is the node agent's directory of volumes (the parent of the
// volume's own directory).
func (v vmVolume) hostDir() string { return path.Dir(path.Dir(v.Volume.Status.Path)) }

// file is the volume's file inside the launcher container.
func (v vmVolume) file() string {
	p := v.Volume.Status.Path
	return path.Join(VolumesDir, path.Base(path.Dir(p)), path.Base(p))
}

func (v vmVolume) format() string {
	if v.Volume.Status.Format != "" {
		return string(v.Volume.Status.Format)
	}
	if v.Volume.Spec.Format != "" {
		return string(v.Volume.Spec.Format)
	}
	return launcher.FormatRaw
}

// serial is what the guest sees as the disk's serial: the volume's name,
// cut to virtio-blk's 20 bytes.
func serial(name string) string {
	if len(name) > 20 {
		return name[:20]
	}
	return name
}

// launcherArg is the --volume value of v in slot.
func (v vmVolume) launcherArg(slot int) string {
	return fmt.Sprintf("path=%s,slot=%d,format=%s,serial=%s", v.file(), slot, v.format(), serial(v.Name))
}

// lookupVolume finds name for vm and says whether vm can use it.
func (r *Reconciler) lookupVolume(ctx context.Context, vm *computev1alpha1.VirtualMachine, name string) (vmVolume, error) {
	out := vmVolume{Name: name}
	v := &storagev1alpha1.Volume{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: name}, v)
	switch {
	case apierrors.IsNotFound(err):
		out.Problem = fmt.Sprintf("volume %q does not exist in namespace %s", name, vm.Namespace)
		return out, nil
	case err != nil:
		return out, err
	}
	out.Volume = v
	for _, a := range v.Status.Attachments {
		if a.Kind != "VirtualMachine" || a.Name != vm.Name {
			out.Problem = fmt.Sprintf("volume %q is in use by %s %s", name, strings.ToLower(a.Kind), a.Name)
			return out, nil
		}
	}
	switch {
	case v.Annotations[storagev1alpha1.ClaimAnnotation] != "":
		out.Problem = fmt.Sprintf("volume %q backs PersistentVolumeClaim %s: pods use it; give the VM a Volume of its own", name, v.Annotations[storagev1alpha1.ClaimAnnotation])
	case v.DeletionTimestamp != nil:
		out.Problem = fmt.Sprintf("volume %q is being deleted", name)
	case v.Status.Phase == storagev1alpha1.VolumeError:
		out.Problem = fmt.Sprintf("volume %q failed: %s", name, v.Status.Message)
	case (v.Status.Phase != storagev1alpha1.VolumeAvailable && v.Status.Phase != storagev1alpha1.VolumeInUse) || v.Status.Path == "":
		out.Waiting = fmt.Sprintf("volume %q is not available yet (%s)", name, v.Status.Phase)
	}
	return out, nil
}

// vmsOfVolume finds the VMs of a volume's namespace that use it.
func (r *Reconciler) vmsOfVolume(ctx context.Context, obj client.Object) []reconcile.Request {
	var vms computev1alpha1.VirtualMachineList
	if err := r.Client.List(ctx, &vms, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, vm := range vms.Items {
		if slices.Contains(vm.VolumeNames(), obj.GetName()) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: vm.Namespace, Name: vm.Name}})
		}
	}
	return out
}

// volumesNode is the one node all vols are on ("" when none says), or a
// problem naming them.
func volumesNode(vm *computev1alpha1.VirtualMachine, vols []vmVolume) (string, *Problem) {
	node, first := vm.Status.NodeName, ""
	if node != "" {
		first = "the VM's disks"
	}
	for _, v := range vols {
		n := v.node()
		if n == "" {
			continue
		}
		if node == "" {
			node, first = n, "volume "+strconv.Quote(v.Name)
			continue
		}
		if n != node {
			return "", &Problem{"VolumesOnDifferentNodes", fmt.Sprintf("volume %q is on node %s but %s on node %s: a VM's volumes must be on its node", v.Name, n, first, node)}
		}
	}
	return node, nil
}

// addVolumes gives a new launcher pod vm's volumes: the node agent's
// volume directory, the root ports, each volume in its slot (spec order),
// the root volume as its root disk, and node affinity to their node.
func addVolumes(pod *corev1.Pod, root *vmVolume, vols []vmVolume, node string, o LauncherOptions) {
	hostDir := o.VolumeDir
	switch {
	case hostDir != "":
	case root != nil:
		hostDir = root.hostDir()
	case len(vols) > 0:
		hostDir = vols[0].hostDir()
	}
	if hostDir == "" {
		return
	}
	c := &pod.Spec.Containers[0]
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: volumeMount, VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: ptrTo(corev1.HostPathDirectory)}}})
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volumeMount, MountPath: VolumesDir})
	c.Args = append(c.Args, "--volume-slots", strconv.Itoa(MaxVolumeSlots))
	var ann []string
	for i, v := range vols {
		c.Args = append(c.Args, "--volume", v.launcherArg(i))
		ann = append(ann, v.Name+"="+strconv.Itoa(i))
	}
	pod.Annotations[AnnotationVolumes] = strings.Join(ann, ",")
	if root != nil {
		// The volume is the root disk: no overlay, no image.
		for i, a := range c.Args {
			if i > 0 && c.Args[i-1] == "--disk" {
				c.Args[i] = "path=" + root.file() + ",format=" + root.format()
			}
			_ = a
		}
		pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "base" })
		c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "base" })
	}
	if node != "" && pod.Spec.Affinity == nil {
		pod.Spec.Affinity = nodeAffinity(node)
	}
}

func ptrTo[T any](v T) *T { return &v }

func nodeAffinity(node string) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
		}}},
	}}
}

// podVolumes are the volumes a launcher pod started with (AnnotationVolumes).
func podVolumes(pod *corev1.Pod) map[string]int {
	out := map[string]int{}
	for _, kv := range strings.Split(pod.Annotations[AnnotationVolumes], ",") {
		name, s, ok := strings.Cut(kv, "=")
		if n, err := strconv.Atoi(s); ok && err == nil {
			out[name] = n
		}
	}
	return out
}

func hasVolumeMount(pod *corev1.Pod) bool {
	return slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == volumeMount })
}

// volumeStatus says where vm's volumes are in pod (nil: none) and, for a
// running launcher, attaches the spec's volumes it lacks and detaches
// those the spec no longer has. requeue is true while something is under
// way.
func (r *Reconciler) volumeStatus(ctx context.Context, vm *computev1alpha1.VirtualMachine, pod *corev1.Pod, running bool, vols []vmVolume) (st []computev1alpha1.VirtualMachineVolumeStatus, requeue bool, err error) {
	if pod == nil || pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil, false, nil
	}
	if !running {
		started := podVolumes(pod)
		for _, v := range vols {
			if s, ok := started[v.Name]; ok {
				st = append(st, computev1alpha1.VirtualMachineVolumeStatus{Volume: v.Name, Phase: computev1alpha1.VolumeAttaching, Target: Target(s), Message: "the VM is starting"})
			}
		}
		return st, len(st) > 0, nil
	}
	// Nothing to do when the status has exactly the spec's volumes attached.
	done := len(vm.Status.Volumes) == len(vols)
	for _, v := range vols {
		i := slices.IndexFunc(vm.Status.Volumes, func(s computev1alpha1.VirtualMachineVolumeStatus) bool { return s.Volume == v.Name })
		done = done && i >= 0 && vm.Status.Volumes[i].Phase == computev1alpha1.VolumeAttached
	}
	if done {
		return vm.Status.Volumes, false, nil
	}
	if !hasVolumeMount(pod) {
		for _, v := range vols {
			st = append(st, computev1alpha1.VirtualMachineVolumeStatus{Volume: v.Name, Phase: computev1alpha1.VolumeAttachError,
				Message: "the VM's launcher started without volumes and cannot open one now: restart the VM (strata vm restart) to attach it"})
		}
		return st, false, nil
	}
	if r.Exec == nil {
		return vm.Status.Volumes, false, fmt.Errorf("no executor for launcher pods")
	}
	run := func(args ...string) (string, error) {
		return r.Exec.Exec(ctx, pod.Namespace, pod.Name, LauncherContainer, append([]string{"strata-launcher", launcher.VolumeCommand}, args...))
	}
	out, err := run("list")
	if err != nil {
		return vm.Status.Volumes, false, fmt.Errorf("list the launcher's volumes: %w", err)
	}
	var have []launcher.VolumeState
	if err := json.Unmarshal([]byte(out), &have); err != nil {
		return vm.Status.Volumes, false, fmt.Errorf("list the launcher's volumes: %q: %w", out, err)
	}
	bySlot := map[int]launcher.VolumeState{}
	byPath := map[string]int{}
	for _, h := range have {
		bySlot[h.Slot] = h
		if h.Path != "" {
			byPath[path.Clean(h.Path)] = h.Slot
		}
	}
	freeSlot := func() int {
		for s := 0; s < MaxVolumeSlots; s++ {
			if _, used := bySlot[s]; !used {
				return s
			}
		}
		return -1
	}
	node := vm.Status.NodeName
	if pod.Spec.NodeName != "" {
		node = pod.Spec.NodeName
	}
	wanted := map[int]bool{}
	for _, v := range vols {
		e := computev1alpha1.VirtualMachineVolumeStatus{Volume: v.Name}
		if v.Volume != nil && v.Volume.Status.Path != "" {
			if s, ok := byPath[path.Clean(v.file())]; ok {
				wanted[s] = true
				e.Target = Target(s)
				if h := bySlot[s]; h.Device && h.Node {
					e.Phase = computev1alpha1.VolumeAttached
					st = append(st, e)
					continue
				}
			}
		}
		switch {
		case v.Problem != "":
			e.Phase, e.Message = computev1alpha1.VolumeAttachError, v.Problem
		case v.Waiting != "":
			e.Phase, e.Message = computev1alpha1.VolumeAttaching, v.Waiting
			requeue = true
		case v.node() != node:
			e.Phase, e.Message = computev1alpha1.VolumeAttachError, fmt.Sprintf("volume %q is on node %s, the VM runs on %s", v.Name, v.node(), node)
		default:
			s := freeSlot()
			if e.Target != "" {
				s = VolumeSlotOf(e.Target)
			}
			if s < 0 {
				e.Phase, e.Message = computev1alpha1.VolumeAttachError, fmt.Sprintf("no free slot: at most %d volumes", MaxVolumeSlots)
				break
			}
			bySlot[s] = launcher.VolumeState{Slot: s}
			wanted[s] = true
			e.Target = Target(s)
			if _, err := run("attach", v.launcherArg(s)); err != nil {
				e.Phase, e.Message = computev1alpha1.VolumeAttachError, "attach: "+err.Error()
				requeue = true
			} else {
				e.Phase = computev1alpha1.VolumeAttached
			}
		}
		st = append(st, e)
	}
	// Detach what the spec no longer has, naming it as the status did.
	for _, h := range have {
		if wanted[h.Slot] {
			continue
		}
		name := ""
		for _, old := range vm.Status.Volumes {
			if old.Target == Target(h.Slot) {
				name = old.Volume
			}
		}
		if name == "" {
			name = r.volumeNameOf(ctx, vm.Namespace, h.Path)
		}
		out, err := run("detach", strconv.Itoa(h.Slot))
		e := computev1alpha1.VirtualMachineVolumeStatus{Volume: name, Phase: computev1alpha1.VolumeDetaching, Target: Target(h.Slot)}
		switch {
		case err != nil:
			e.Message = "detach: " + err.Error()
		case strings.TrimSpace(out) == "detached":
			continue
		default:
			e.Message = "waiting for the guest to release the disk"
		}
		requeue = true
		if !slices.ContainsFunc(st, func(s computev1alpha1.VirtualMachineVolumeStatus) bool { return s.Volume == name }) {
			st = append(st, e)
		}
	}
	sort.SliceStable(st, func(i, j int) bool { return st[i].Volume < st[j].Volume })
	return st, requeue, nil
}

// VolumeSlotOf is the slot of a Target.
func VolumeSlotOf(target string) int {
	for s := 0; s < MaxVolumeSlots; s++ {
		if Target(s) == target {
			return s
		}
	}
	return -1
}

// volumeNameOf names the Volume of the file p in the launcher (its
// directory is the Volume's UID), or returns p.
func (r *Reconciler) volumeNameOf(ctx context.Context, ns, p string) string {
	var l storagev1alpha1.VolumeList
	if err := r.Client.List(ctx, &l, client.InNamespace(ns)); err == nil {
		for _, v := range l.Items {
			if string(v.UID) == path.Base(path.Dir(p)) {
				return v.Name
			}
		}
	}
	return path.Base(path.Dir(p))
}
