package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

var (
	vmGVR     = computev1alpha1.GroupVersion.WithResource("virtualmachines")
	vmimGVR   = computev1alpha1.GroupVersion.WithResource("virtualmachinemigrations")
	flavorGVR = computev1alpha1.GroupVersion.WithResource("flavors")
)

type bench struct {
	*cluster
	cfg config
	// home is the node the VM booted on, away the other node it moves to
	// and back from, pinger the third.
	home, away, pinger string
	ip                 string
	// pod is the VM's launcher pod: the first one, then each migration's
	// target pod.
	pod string
	// pings is the pinger's log as last read.
	pings string
}

// migRun is one migration's figures.
type migRun struct {
	n        int
	from, to string
	client   time.Duration // create -> Succeeded seen
	status   computev1alpha1.VirtualMachineMigrationStatus
	outage   time.Duration // longest time between answered pings
	tries    int
	fails    int
}

// create creates obj (a typed API object) as resource gvr.
func (c *cluster) create(ctx context.Context, gvr schema.GroupVersionResource, ns string, obj any) (*unstructured.Unstructured, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	ri := c.dyn.Resource(gvr)
	if ns != "" {
		return ri.Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: u}, metav1.CreateOptions{})
	}
	return ri.Create(ctx, &unstructured.Unstructured{Object: u}, metav1.CreateOptions{})
}

// get reads the namespaced resource gvr named name into out.
func (c *cluster) get(ctx context.Context, gvr schema.GroupVersionResource, name string, out any) error {
	u, err := c.dyn.Resource(gvr).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out)
}

// prepare creates the namespace, uploads the test VM image and creates the
// Flavor.
func (b *bench) prepare(ctx context.Context, bin, imageDir string) error {
	if err := benchenv.CreateNamespace(ctx, b.cs, namespace); err != nil {
		return err
	}
	if _, err := benchenv.UploadTestVMImage(ctx, b.dyn, bin, b.srv.DataDir(), imageDir, namespace, imageName); err != nil {
		return err
	}
	_, err := b.create(ctx, flavorGVR, "", &computev1alpha1.Flavor{
		TypeMeta:   metav1.TypeMeta{APIVersion: computev1alpha1.GroupVersion.String(), Kind: "Flavor"},
		ObjectMeta: metav1.ObjectMeta{Name: flavorName},
		Spec:       computev1alpha1.FlavorSpec{VCPUs: 1, RAMMiB: b.cfg.memoryMiB},
	})
	return err
}

// bootVM creates the VM and waits until it runs, its console shows the
// marker and its DHCP lease, and it has an address.
func (b *bench) bootVM(ctx context.Context) error {
	began := time.Now()
	_, err := b.create(ctx, vmGVR, namespace, &computev1alpha1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: computev1alpha1.GroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: vmName, Namespace: namespace},
		Spec:       computev1alpha1.VirtualMachineSpec{Flavor: flavorName, Image: imageName},
	})
	if err != nil {
		return fmt.Errorf("create VM: %w", err)
	}
	fmt.Printf("VM %s (1 vCPU, %d MiB) created, waiting for its console marker and DHCP lease ...\n", vmName, b.cfg.memoryMiB)
	var last string
	deadline := time.Now().Add(b.cfg.bootTimeout)
	for {
		var vm computev1alpha1.VirtualMachine
		if err := b.get(ctx, vmGVR, vmName, &vm); err != nil {
			return err
		}
		st := vm.Status
		last = fmt.Sprintf("phase %q, node %q, IPs %v, launcher pod %q", st.Phase, st.NodeName, st.IPs, st.LauncherPod)
		if st.Phase == computev1alpha1.VirtualMachineRunning && len(st.IPs) > 0 && st.LauncherPod != "" {
			logs := b.podLog(ctx, st.LauncherPod)
			if strings.Contains(logs, testimage.Marker) && strings.Contains(logs, "strata-testimage: eth0") {
				b.home, b.ip, b.pod = st.NodeName, st.IPs[0], st.LauncherPod
				break
			}
			last += "; no marker and DHCP lease on the console yet"
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("VM not booted after %s: %s", b.cfg.bootTimeout, last)
		}
		if err := benchenv.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	rest := others(b.home)
	b.away, b.pinger = rest[0], rest[1]
	fmt.Printf("VM %s (%s) booted on %s in %.1f s; it moves between %s and %s, pinged from %s\n",
		vmName, b.ip, b.home, time.Since(began).Seconds(), b.home, b.away, b.pinger)
	return nil
}

// podLog is the (first container's) log of pod, "" when it cannot be read.
func (b *bench) podLog(ctx context.Context, pod string) string {
	data, err := b.cs.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return ""
	}
	return string(data)
}

// startPinger starts the pinger pod on the third node and waits for its
// first answer from the VM.
func (b *bench) startPinger(ctx context.Context, tb *benchenv.TB, archive string) error {
	if err := b.importBusybox(tb, b.pinger, archive); err != nil {
		return fmt.Errorf("busybox image on %s: %w", b.pinger, err)
	}
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pingerName},
		Spec: corev1.PodSpec{
			NodeName:                      b.pinger,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: pingerName, Image: busyboxRef, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", `while true; do t=$(cut -d" " -f1 /proc/uptime); if timeout 1 wget -qO- http://` + b.ip + `/ >/dev/null 2>&1; then echo "$t ok"; else echo "$t fail"; fi; usleep 200000; done`},
			}},
		},
	}
	if _, err := b.cs.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the pinger: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if b.pings = b.podLog(ctx, pingerName); strings.Contains(b.pings, " ok") {
			fmt.Printf("pinger on %s reaches the VM at %s\n", b.pinger, b.ip)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pinger on %s does not reach the VM at %s after 2 minutes; its log:\n%s", b.pinger, b.ip, benchenv.LastLines(b.pings, 10))
		}
		if err := benchenv.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

// migrate moves the VM from one node to the other and measures it.
func (b *bench) migrate(ctx context.Context, n int, from, to string) (*migRun, error) {
	fmt.Printf("migration %d/%d: %s -> %s ...\n", n, b.cfg.runs, from, to)
	r := &migRun{n: n, from: from, to: to}
	// Still where the last migration left it? (The VM controller has been
	// seen to start a VM anew on its first node after a migration.)
	var vm computev1alpha1.VirtualMachine
	if err := b.get(ctx, vmGVR, vmName, &vm); err != nil {
		return nil, err
	}
	if vm.Status.LauncherPod != b.pod || vm.Status.NodeName != from {
		return nil, fmt.Errorf("the VM should run in pod %s on %s, but its status says pod %s on %q (phase %s): the VM controller started it anew",
			b.pod, from, vm.Status.LauncherPod, vm.Status.NodeName, vm.Status.Phase)
	}
	upFrom, err := uptime()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	created, err := b.create(ctx, vmimGVR, namespace, &computev1alpha1.VirtualMachineMigration{
		TypeMeta:   metav1.TypeMeta{APIVersion: computev1alpha1.GroupVersion.String(), Kind: "VirtualMachineMigration"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: vmName + "-migration-", Namespace: namespace},
		Spec:       computev1alpha1.VirtualMachineMigrationSpec{VMName: vmName, TargetNode: to},
	})
	if err != nil {
		return nil, fmt.Errorf("create the migration: %w", err)
	}
	name := created.GetName()
	deadline := began.Add(b.cfg.migTimeout)
	for {
		var m computev1alpha1.VirtualMachineMigration
		if err := b.get(ctx, vmimGVR, name, &m); err != nil {
			return nil, err
		}
		r.status = m.Status
		if m.Status.Phase.Finished() {
			r.client = time.Since(began)
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s still %s after %s: %s", name, m.Status.Phase, b.cfg.migTimeout, m.Status.Message)
		}
		if err := benchenv.Sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if r.status.Phase != computev1alpha1.MigrationSucceeded {
		return nil, fmt.Errorf("%s: phase %s: %s", name, r.status.Phase, r.status.Message)
	}
	// The VM runs in the target pod on its new node, then the pinger keeps
	// trying a little. A launcher pod that is neither the source nor the
	// target means the VM controller started the VM anew.
	settled := time.Now().Add(time.Minute)
	for {
		var vm computev1alpha1.VirtualMachine
		if err := b.get(ctx, vmGVR, vmName, &vm); err != nil {
			return r, err
		}
		st := vm.Status
		if st.NodeName == to && st.LauncherPod == r.status.TargetPod && st.Phase == computev1alpha1.VirtualMachineRunning {
			break
		}
		if st.LauncherPod != r.status.SourcePod && st.LauncherPod != r.status.TargetPod {
			return r, fmt.Errorf("%s succeeded (target pod %s on %s), but the VM's launcher pod is now %s on %q (phase %s): the VM controller started it anew", name, r.status.TargetPod, to, st.LauncherPod, st.NodeName, st.Phase)
		}
		if time.Now().After(settled) {
			return r, fmt.Errorf("a minute after %s succeeded the VM is %s in pod %s on %q, want Running in %s on %s", name, st.Phase, st.LauncherPod, st.NodeName, r.status.TargetPod, to)
		}
		if err := benchenv.Sleep(ctx, 100*time.Millisecond); err != nil {
			return r, err
		}
	}
	b.pod = r.status.TargetPod
	if err := benchenv.Sleep(ctx, afterMove); err != nil {
		return r, err
	}
	upTo, err := uptime()
	if err != nil {
		return r, err
	}
	b.pings = b.podLog(ctx, pingerName)
	r.outage, r.tries, r.fails = longestOutage(b.pings, upFrom, upTo)
	if r.tries == 0 {
		return r, fmt.Errorf("the pinger logged nothing during the migration; its log:\n%s", benchenv.LastLines(b.pings, 10))
	}
	return r, nil
}

// uptime is the machine's /proc/uptime, the clock of the pinger's log.
func uptime() (float64, error) {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, errors.New("/proc/uptime is empty")
	}
	return strconv.ParseFloat(f[0], 64)
}

// ping is one line of the pinger's log.
type ping struct {
	at float64
	ok bool
}

func parsePings(log string) []ping {
	var out []ping
	for _, line := range strings.Split(log, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		at, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out = append(out, ping{at, f[1] == "ok"})
	}
	return out
}

// longestOutage is the longest time between two answered tries that ends
// within [from, to] (uptime seconds; counting from the last answer before
// from), the tries within it and how many failed. An outage still going on
// at the last try within the window counts up to that try.
func longestOutage(log string, from, to float64) (worst time.Duration, tries, fails int) {
	lastOK, lastTry := -1.0, -1.0
	gap := func(a, b float64) {
		if a >= 0 {
			worst = max(worst, time.Duration((b-a)*float64(time.Second)))
		}
	}
	for _, p := range parsePings(log) {
		if p.at > to {
			break
		}
		if p.at >= from {
			tries++
			lastTry = p.at
			if !p.ok {
				fails++
			} else {
				gap(lastOK, p.at)
			}
		}
		if p.ok {
			lastOK = p.at
		}
	}
	if lastTry > lastOK {
		gap(lastOK, lastTry)
	}
	return worst, tries, fails
}

// usualGap is the median time between two answered tries while nothing
// moves (the pinger's resolution): over the log before the first migration
// and between migrations, i.e. every interval of two consecutive answered
// tries; outages are rare enough not to move it.
func (b *bench) usualGap() time.Duration {
	var gaps []time.Duration
	prev := -1.0
	for _, p := range parsePings(b.pings) {
		if !p.ok {
			prev = -1
			continue
		}
		if prev >= 0 {
			gaps = append(gaps, time.Duration((p.at-prev)*float64(time.Second)))
		}
		prev = p.at
	}
	return benchenv.Percentile(gaps, 50)
}

// cleanup deletes the VM (and waits for its launcher pods), the pinger and
// the Flavor.
func (c *cluster) cleanup(ctx context.Context) error {
	if c.dyn == nil {
		return nil
	}
	var errs []error
	if err := c.dyn.Resource(vmGVR).Namespace(namespace).Delete(ctx, vmName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	if err := c.cs.CoreV1().Pods(namespace).Delete(ctx, pingerName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	for {
		l, err := c.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			errs = append(errs, err)
			break
		}
		if len(l.Items) == 0 {
			break
		}
		if err := benchenv.Sleep(ctx, 250*time.Millisecond); err != nil {
			errs = append(errs, fmt.Errorf("%d pods still there: %w", len(l.Items), err))
			break
		}
	}
	if err := c.dyn.Resource(flavorGVR).Delete(ctx, flavorName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
