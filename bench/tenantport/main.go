// Command tenantport measures, on one node, the time from a Port's creation
// on a tenant network to traffic flowing to the pod that uses it (issue 6),
// next to the same figure for a plain pod on the pod network in the same
// run. It prints figures and never fails on them.
//
//	go run ./bench/tenantport -bin bin/strata [-ports 10]   # as root
//
// It starts `strata server` with its node agent through benchenv
// (internal/testenv: the host-wide node agent lock, node Ready, cleanup),
// makes Network net1 with Subnet sub1 (10.0.0.0/24), and starts two prober
// pods, one on net1 and one on the pod network. Each prober reads targets
// (files NAME holding an IP, from a hostPath directory) and fetches
// http://IP/ every 100 ms until one answers, logging when it starts and
// when the target answered (kubelet log timestamps). Then, one after
// another, -ports times: a Port on net1 and at once a pod using it; and a
// plain pod on the pod network. The bench hands the Port's address to the
// tenant prober as soon as the Port's status has it; a plain pod reports
// its own address once its container runs (its IP is known nowhere
// earlier).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/storage/ociimage"
)

const (
	benchImage  = "docker.io/library/busybox:bench"
	hostBusybox = "/bin/busybox"
	namespace   = "bench-tenantport"
	network     = "net1"
	subnet      = "sub1"
	subnetCIDR  = "10.0.0.0/24"
	benchLabel  = "strata.io/bench"
	lockTimeout = 30 * time.Minute
)

var (
	networksGVR = netv1.GroupVersion.WithResource("networks")
	subnetsGVR  = netv1.GroupVersion.WithResource("subnets")
	portsGVR    = netv1.GroupVersion.WithResource("ports")
)

type config struct {
	bin        string
	ports      int
	timeout    time.Duration
	arpRetrans int
	keep       bool
	lockWait   time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "bin/strata", "strata binary to run")
	flag.IntVar(&cfg.ports, "ports", 10, "Ports (and as many plain pods) created one after another")
	flag.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "how long one target may take to answer before it counts as failed")
	flag.IntVar(&cfg.arpRetrans, "arp-retrans-ms", 100, "the probers' ARP retransmit time (0: the kernel's 1 s); see the README")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary data dir")
	flag.DurationVar(&cfg.lockWait, "lock-wait", lockTimeout, "how long to wait for another node agent (an e2e test) on this host to finish")
	flag.Parse()
	if cfg.ports < 1 {
		fmt.Fprintln(os.Stderr, "tenantport bench: -ports must be at least 1")
		os.Exit(2)
	}
	benchenv.Main("tenantport", func(ctx context.Context) error { return run(ctx, cfg) })
}

func run(ctx context.Context, cfg config) (err error) {
	node, err := benchenv.StartNode(benchenv.NodeOptions{Bench: "tenantport", Bin: cfg.bin, Keep: cfg.keep, LockWait: cfg.lockWait})
	if err != nil {
		return err
	}
	var vni int32
	defer func() { node.Close(err) }()
	// Before Close: the devices are this node's only while it holds the
	// host's node agent lock.
	defer func() { removeLeftoverDevices(vni) }()
	img, err := ociimage.Busybox(hostBusybox)
	if err != nil {
		return fmt.Errorf("busybox image from %s (install busybox-static): %w", hostBusybox, err)
	}
	archive := filepath.Join(node.Dir, "busybox.tar")
	if err := ociimage.WriteTarball(archive, benchImage, img); err != nil {
		return err
	}
	if err := node.ImportImageArchive(archive); err != nil {
		return err
	}
	if err := node.CreateNamespace(ctx, namespace); err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(node.REST)
	if err != nil {
		return err
	}
	if vni, err = makeNetwork(ctx, dyn); err != nil {
		return node.CheckRunning(err)
	}
	fmt.Printf("network %s (VNI %d) with subnet %s %s in namespace %s\n", network, vni, subnet, subnetCIDR, namespace)

	b := &bench{cfg: cfg, node: node, dyn: dyn}
	b.tr = newTracker(b.targetDir(tenant))
	for _, k := range []kind{tenant, podNet} {
		dir := b.targetDir(k)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchErr := make(chan error, 2)
	go func() { watchErr <- b.watchPorts(wctx) }()
	go func() { watchErr <- b.watchPods(wctx) }()

	fmt.Printf("starting the probers (one on %s, one on the pod network) ...\n", network)
	if err := b.startProbers(wctx); err != nil {
		return node.CheckRunning(err)
	}

	var warm, samples []*sample
	defer func() {
		if len(samples) > 0 || len(warm) > 0 {
			report(b.tr.snapshot(warm), b.tr.snapshot(samples), cfg)
		}
		fmt.Printf("load average now: %s\n\n", benchenv.LoadAverage())
		// The agent removes net1's bridge once no pod uses it.
		if ctx.Err() == nil {
			b.teardown(context.WithoutCancel(ctx), vni)
		}
	}()
	one := func(k kind, name string) (*sample, error) {
		select {
		case err := <-watchErr:
			return nil, fmt.Errorf("watch: %w", err)
		default:
		}
		s, err := b.measure(ctx, k, name)
		if err != nil {
			return nil, node.CheckRunning(err)
		}
		fmt.Printf("  %s\n", b.tr.line(s))
		return s, nil
	}
	fmt.Printf("warm-up: one of each ...\n")
	for _, k := range []kind{tenant, podNet} {
		s, err := one(k, k.prefix()+"warm")
		if err != nil {
			return err
		}
		warm = append(warm, s)
	}
	fmt.Printf("%d Ports and %d plain pods, one after another, alternating ...\n", cfg.ports, cfg.ports)
	for i := range cfg.ports {
		for _, k := range []kind{tenant, podNet} {
			s, err := one(k, fmt.Sprintf("%s%02d", k.prefix(), i))
			if err != nil {
				return err
			}
			samples = append(samples, s)
		}
	}
	return nil
}

// makeNetwork creates net1 and sub1 and returns net1's VNI once the
// network controller has given it one.
func makeNetwork(ctx context.Context, dyn dynamic.Interface) (int32, error) {
	create := func(res dynamic.ResourceInterface, obj any) error {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return err
		}
		_, err = res.Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{})
		return err
	}
	nw := &netv1.Network{
		TypeMeta:   metav1.TypeMeta{APIVersion: netv1.GroupVersion.String(), Kind: "Network"},
		ObjectMeta: metav1.ObjectMeta{Name: network},
	}
	if err := create(dyn.Resource(networksGVR).Namespace(namespace), nw); err != nil {
		return 0, fmt.Errorf("create network %s: %w", network, err)
	}
	sn := &netv1.Subnet{
		TypeMeta:   metav1.TypeMeta{APIVersion: netv1.GroupVersion.String(), Kind: "Subnet"},
		ObjectMeta: metav1.ObjectMeta{Name: subnet},
		Spec:       netv1.SubnetSpec{Network: network, CIDR: subnetCIDR},
	}
	if err := create(dyn.Resource(subnetsGVR).Namespace(namespace), sn); err != nil {
		return 0, fmt.Errorf("create subnet %s: %w", subnet, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		u, err := dyn.Resource(networksGVR).Namespace(namespace).Get(ctx, network, metav1.GetOptions{})
		if err != nil {
			return 0, err
		}
		var n netv1.Network
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &n); err != nil {
			return 0, err
		}
		if n.Status.SegmentationID != 0 && len(n.Status.Subnets) > 0 {
			return n.Status.SegmentationID, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("network %s has no VNI or subnet in its status after a minute: %+v", network, n.Status)
		}
		if err := benchenv.Sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// kind is what a target is: a pod on a Port of net1, or a plain pod.
type kind int

const (
	tenant kind = iota
	podNet
)

func (k kind) prefix() string {
	if k == tenant {
		return "tp-"
	}
	return "pp-"
}

func (k kind) String() string {
	if k == tenant {
		return "tenant"
	}
	return "pod-network"
}

type bench struct {
	cfg  config
	node *benchenv.Node
	dyn  dynamic.Interface
	tr   *tracker
}

// targetDir is the host directory the prober of k reads its targets from.
func (b *bench) targetDir(k kind) string {
	if k == tenant {
		return filepath.Join(b.node.Dir, "targets", "tenant")
	}
	return filepath.Join(b.node.Dir, "targets", "pod")
}

// measure creates one target (for tenant: its Port, then the pod right
// after) and waits until the prober has reached it and, for a tenant pod,
// its Port is ACTIVE.
func (b *bench) measure(ctx context.Context, k kind, name string) (*sample, error) {
	pods := b.node.Client.CoreV1().Pods(namespace)
	s := b.tr.add(k, name, strings.Fields(benchenv.LoadAverage())[0])
	if k == tenant {
		port := &netv1.Port{
			TypeMeta:   metav1.TypeMeta{APIVersion: netv1.GroupVersion.String(), Kind: "Port"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       netv1.PortSpec{Network: network},
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(port)
		if err != nil {
			return nil, err
		}
		if _, err := b.dyn.Resource(portsGVR).Namespace(namespace).Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create port %s: %w", name, err)
		}
	}
	if _, err := pods.Create(ctx, targetPod(k, name, b.targetDir(k)), metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create pod %s: %w", name, err)
	}
	deadline := time.Now().Add(b.cfg.timeout)
	for {
		if b.tr.complete(s) {
			return s, nil
		}
		if time.Now().After(deadline) {
			b.tr.timeOut(s)
			fmt.Printf("  %s: not complete after %s (counted as failed)\n", name, b.cfg.timeout)
			return s, nil
		}
		if err := benchenv.Sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// targetPod is a busybox httpd; a plain pod (on the pod network) first
// writes its own address into the prober's target directory.
func targetPod(k kind, name, targetDir string) *corev1.Pod {
	zero := int64(0)
	script := "mkdir -p /www && echo hello-from-" + name + " > /www/index.html && httpd -p 80 -h /www && "
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{benchLabel: "tenantport"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           benchImage,
				ImagePullPolicy: corev1.PullNever,
			}},
		},
	}
	if k == tenant {
		pod.Annotations = map[string]string{netv1.AnnotationPort: name}
	} else {
		// Written then renamed: the prober never reads half a file.
		script += "ip=$(ip -4 -o addr show dev eth0 | sed -n 's/.* inet \\([0-9.]*\\)\\/.*/\\1/p') && " +
			"echo $ip > /targets/." + name + " && mv /targets/." + name + " /targets/" + name + " && "
		pod.Spec.Volumes = []corev1.Volume{targetVolume(targetDir)}
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "targets", MountPath: "/targets"}}
	}
	script += "trap 'exit 0' TERM; sleep 3600 & wait"
	pod.Spec.Containers[0].Command = []string{"sh", "-c", script}
	return pod
}

func targetVolume(dir string) corev1.Volume {
	t := corev1.HostPathDirectoryOrCreate
	return corev1.Volume{Name: "targets", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &t}}}
}

// teardown deletes the bench's pods, then its Ports and network, and waits
// (bounded) until the agent has removed net1's devices from the node.
func (b *bench) teardown(ctx context.Context, vni int32) {
	began := time.Now()
	grace := int64(0)
	pods := b.node.Client.CoreV1().Pods(namespace)
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{}); err != nil {
		fmt.Printf("teardown: delete pods: %v\n", err)
		return
	}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err == nil && len(list.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("teardown: pods still there after 2 minutes\n")
			return
		}
		benchenv.Sleep(ctx, 250*time.Millisecond)
	}
	for _, gvr := range []struct {
		res  dynamic.ResourceInterface
		what string
	}{{b.dyn.Resource(portsGVR).Namespace(namespace), "ports"}, {b.dyn.Resource(subnetsGVR).Namespace(namespace), "subnets"}, {b.dyn.Resource(networksGVR).Namespace(namespace), "networks"}} {
		if err := gvr.res.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			fmt.Printf("teardown: delete %s: %v\n", gvr.what, err)
		}
	}
	if vni != 0 {
		for deadline := time.Now().Add(30 * time.Second); devicesLeft(vni) != nil && time.Now().Before(deadline); {
			benchenv.Sleep(ctx, 250*time.Millisecond)
		}
	}
	fmt.Printf("bench pods, ports and network deleted in %.1f s\n", time.Since(began).Seconds())
}
