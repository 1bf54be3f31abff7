package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/testenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// vmBoot is what the bench saw of one VM's start.
type vmBoot struct {
	name string
	load string // 1-minute load average at its create call
	// This client's clock: before the create call; the watch's first
	// sight of the launcher pod, of it bound to a node, of its container
	// running.
	create, podSeen, scheduled, running time.Time
	// The kubelet's timestamps of the container log's lines: the first
	// (the launcher's), "QEMU started", the marker.
	firstLine, qemuStarted, marker time.Time
	// The API's (1 s resolution): the PodScheduled condition and the
	// container's startedAt.
	schedCond, startedAt time.Time
	// The image volume's pull, from the kubelet's Pulled event: its
	// duration, or cached; pullKnown is false when no event was found.
	pull              time.Duration
	cached, pullKnown bool

	done chan struct{} // closed once the marker is seen
	once sync.Once
	err  error // why the launcher pod failed, if it did
}

func (v *vmBoot) finish(err error) {
	v.once.Do(func() {
		v.err = err
		close(v.done)
	})
}

// round creates the VMs — at once, or each after the previous one's
// marker — and waits until every one has printed the marker. The VMs stay.
func (b *bench) round(ctx context.Context, names []string, atOnce bool) ([]*vmBoot, error) {
	cs := b.node.Client
	boots := map[string]*vmBoot{}
	var order []*vmBoot
	for _, n := range names {
		v := &vmBoot{name: n, done: make(chan struct{})}
		boots[n] = v
		order = append(order, v)
	}
	var mu sync.Mutex // guards the vmBoots' times
	selector := labelRole + "=launcher"
	list, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- benchenv.WatchPods(wctx, cs, namespace, selector, list.ResourceVersion, func(p *corev1.Pod, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			v := boots[p.Labels[labelVM]]
			if v == nil {
				return
			}
			if v.podSeen.IsZero() {
				v.podSeen = at
			}
			if v.scheduled.IsZero() && p.Spec.NodeName != "" {
				v.scheduled = at
			}
			for _, s := range p.Status.ContainerStatuses {
				if s.Name == launcherContainer && s.State.Running != nil && v.running.IsZero() {
					v.running = at
				}
			}
			if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
				v.finish(fmt.Errorf("launcher pod %s ended (%s): %s", p.Name, p.Status.Phase, terminated(p)))
			}
		})
	}()
	var logs sync.WaitGroup
	defer logs.Wait()
	defer cancel()

	wait := func(vs []*vmBoot) error {
		timer := time.NewTimer(b.cfg.bootTimeout)
		defer timer.Stop()
		for _, v := range vs {
			select {
			case <-v.done:
				if v.err != nil {
					return fmt.Errorf("VM %s: %w", v.name, v.err)
				}
			case err := <-watchErr:
				return fmt.Errorf("watching the launcher pods: %v", err)
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
				return fmt.Errorf("VM %s printed no marker within %s: %s", v.name, b.cfg.bootTimeout, b.describe(ctx, v.name))
			}
		}
		return nil
	}
	start := func(v *vmBoot) error {
		mu.Lock()
		v.load = strings.Fields(benchenv.LoadAverage())[0]
		v.create = time.Now()
		mu.Unlock()
		if err := b.createVM(ctx, v.name); err != nil {
			return err
		}
		logs.Go(func() { followLog(wctx, b, v, &mu) })
		return nil
	}
	if atOnce {
		var wg sync.WaitGroup
		errs := make([]error, len(order))
		for i, v := range order {
			wg.Go(func() { errs[i] = start(v) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		if err := wait(order); err != nil {
			return nil, err
		}
	} else {
		for _, v := range order {
			if err := start(v); err != nil {
				return nil, err
			}
			if err := wait([]*vmBoot{v}); err != nil {
				return nil, err
			}
			mu.Lock()
			fmt.Printf("  %s: marker %.2f s after create (load %s)\n", v.name, v.marker.Sub(v.create).Seconds(), v.load)
			mu.Unlock()
		}
	}
	cancel()
	logs.Wait()
	mu.Lock()
	defer mu.Unlock()
	return order, b.readStatus(ctx, order)
}

func (b *bench) createVM(ctx context.Context, name string) error {
	vm := &computev1alpha1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: computev1alpha1.GroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       computev1alpha1.VirtualMachineSpec{Flavor: flavorName, Image: imageName},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(vm)
	if err != nil {
		return err
	}
	if _, err := b.dyn.Resource(vmGVR).Namespace(namespace).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create VM %s: %w", name, err)
	}
	return nil
}

// followLog follows the launcher container's log (kubelet timestamps on)
// and records the first line, "QEMU started" and the marker, then marks v
// done. Until the container runs, GetLogs fails: it tries again.
func followLog(ctx context.Context, b *bench, v *vmBoot, mu *sync.Mutex) {
	benchenv.FollowPodLog(ctx, b.node.Client, namespace, launcherPodName(v.name), launcherContainer, func(at time.Time, text string) bool {
		mu.Lock()
		if v.firstLine.IsZero() {
			v.firstLine = at
		}
		if v.qemuStarted.IsZero() && strings.HasPrefix(text, qemuStartedLine) {
			v.qemuStarted = at
		}
		found := !strings.HasPrefix(text, "strata-launcher:") && strings.Contains(text, testimage.Marker)
		if found && v.marker.IsZero() {
			v.marker = at
		}
		mu.Unlock()
		if found {
			v.finish(nil)
		}
		return !found
	})
}

// pulledIn is the pull time in the kubelet's "Successfully pulled image
// "X" in 1.234s (1.234s including waiting)" event.
var pulledIn = regexp.MustCompile(`Successfully pulled image .* in ([0-9.]+[a-zµ]+)`)

// readStatus fills in the API's figures of the VMs' launcher pods: the
// PodScheduled condition, the container's startedAt and the image
// volume's Pulled event.
func (b *bench) readStatus(ctx context.Context, vs []*vmBoot) error {
	cs := b.node.Client
	for _, v := range vs {
		p, err := cs.CoreV1().Pods(namespace).Get(ctx, launcherPodName(v.name), metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
				v.schedCond = c.LastTransitionTime.Time
			}
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == launcherContainer && s.State.Running != nil {
				v.startedAt = s.State.Running.StartedAt.Time
			}
		}
		events, err := cs.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name + ",involvedObject.uid=" + string(p.UID)})
		if err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Reason != "Pulled" || !strings.Contains(e.Message, b.imageRef) {
				continue
			}
			if m := pulledIn.FindStringSubmatch(e.Message); m != nil {
				if d, err := time.ParseDuration(m[1]); err == nil {
					v.pull, v.pullKnown = d, true
				}
			} else if strings.Contains(e.Message, "already present") {
				v.cached, v.pullKnown = true, true
			}
		}
	}
	return nil
}

// describe says where a VM that did not boot got to: its phase and Ready
// condition, and the tail of its launcher's log.
func (b *bench) describe(ctx context.Context, name string) string {
	var out []string
	if u, err := b.dyn.Resource(vmGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
		var vm computev1alpha1.VirtualMachine
		if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &vm) == nil {
			out = append(out, "phase "+string(vm.Status.Phase))
			for _, c := range vm.Status.Conditions {
				out = append(out, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
			}
		}
	}
	tail := int64(15)
	if data, err := b.node.Client.CoreV1().Pods(namespace).GetLogs(launcherPodName(name), &corev1.PodLogOptions{Container: launcherContainer, TailLines: &tail}).DoRaw(ctx); err == nil {
		out = append(out, "log tail:\n"+string(data))
	} else {
		out = append(out, "no log: "+err.Error())
	}
	return strings.Join(out, "; ")
}

func terminated(p *corev1.Pod) string {
	for _, s := range p.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil {
			hint := ""
			if t.Reason == "OOMKilled" {
				// Seen with guests too small for the test image's kernel:
				// it resets the machine over and over, and TCG translates
				// its code anew each time.
				hint = " (the pod's limit is the guest's memory + the controller's overhead request; dmesg names the process killed)"
			}
			return fmt.Sprintf("exit code %d, %s%s: %s", t.ExitCode, t.Reason, hint, t.Message)
		}
	}
	return p.Status.Message
}

// deleteVMs deletes every VM of the bench and waits until their launcher
// pods are gone from the API and no QEMU of the node runs any more.
func (b *bench) deleteVMs(ctx context.Context) error {
	began := time.Now()
	vms := b.dyn.Resource(vmGVR).Namespace(namespace)
	if err := vms.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete VMs: %w", err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		left := ""
		if l, err := vms.List(ctx, metav1.ListOptions{}); err != nil {
			return err
		} else if len(l.Items) > 0 {
			left = fmt.Sprintf("%d VMs", len(l.Items))
		} else if p, err := b.node.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labelRole + "=launcher"}); err != nil {
			return err
		} else if len(p.Items) > 0 {
			left = fmt.Sprintf("%d launcher pods", len(p.Items))
		} else if n := len(qemuProcesses(b.node.DataDir())); n > 0 {
			left = fmt.Sprintf("%d QEMU processes", n)
		}
		if left == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still there 3 minutes after deleting the VMs", left)
		}
		if err := benchenv.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	fmt.Printf("  VMs deleted, their pods and QEMU gone in %.1f s\n", time.Since(began).Seconds())
	return nil
}

// qemuProcesses are the QEMU processes of the node on dataDir.
func qemuProcesses(dataDir string) []int {
	var out []int
	for _, pid := range testenv.NodeProcesses(dataDir) {
		if strings.HasPrefix(procName(pid), "qemu-system") {
			out = append(out, pid)
		}
	}
	return out
}
