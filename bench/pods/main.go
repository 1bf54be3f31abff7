// Command pods measures the node side of a `strata server` that runs its
// node agent: pod startup latency with the image present (1, 10 and 100
// pods created at once, plus 10 with a readiness probe), containerd's own
// time to start the same image as a reference, and the memory of the
// server, containerd and shims with 10 pods idle. It prints figures against
// the targets and never fails on them.
//
//	go run ./bench/pods -bin bin/strata [-pods 1,10,100] [-idle 2m]
//
// The server is started, waited for (node Ready) and cleaned up by
// internal/testenv (the same code the e2e tests use, including the
// host-wide lock that keeps one node agent per host), so it never runs
// beside an e2e test's node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/storage/ociimage"
)

const (
	benchImage   = "docker.io/library/busybox:bench"
	hostBusybox  = "/bin/busybox"
	namespace    = "bench-pods"
	roundLabel   = "strata.io/bench-round"
	lockTimeout  = 30 * time.Minute
	settleAfter  = 2 * time.Second // between a round's teardown and the next round
	deleteWait   = 3 * time.Minute
	cleanupWait  = 90 * time.Second
	p50Target    = time.Second
	p99Target    = 3 * time.Second
	memTargetMiB = 450
	memoryPods   = 10
)

// A pod's command: exits at once on SIGTERM (a plain `sleep` as PID 1
// ignores it), so that deleting a round takes no grace period.
var sleeper = []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"}

type config struct {
	bin      string
	rounds   []int
	probe    int
	ctrRuns  []int
	idle     time.Duration
	keep     bool
	lockWait time.Duration
}

func main() {
	var cfg config
	var rounds, ctrRuns string
	flag.StringVar(&cfg.bin, "bin", "bin/strata", "strata binary to run")
	flag.StringVar(&rounds, "pods", "1,10,100", "pods created at once, per round")
	flag.IntVar(&cfg.probe, "probe-pods", 10, "pods of the extra round with an exec readiness probe (0: none)")
	flag.StringVar(&ctrRuns, "ctr", "1,10", "containers started at once through containerd's client, per reference round")
	flag.DurationVar(&cfg.idle, "idle", 2*time.Minute, "how long 10 pods idle before memory is read")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary data dir")
	flag.DurationVar(&cfg.lockWait, "lock-wait", lockTimeout, "how long to wait for another node agent (an e2e test) on this host to finish")
	flag.Parse()
	var err error
	if cfg.rounds, err = parseInts(rounds); err == nil {
		cfg.ctrRuns, err = parseInts(ctrRuns)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pods bench:", err)
		os.Exit(2)
	}

	benchenv.Main("pods", func(ctx context.Context) error { return run(ctx, cfg) })
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, cfg config) (err error) {
	node, err := benchenv.StartNode(benchenv.NodeOptions{Bench: "pods", Bin: cfg.bin, Keep: cfg.keep, LockWait: cfg.lockWait})
	if err != nil {
		return err
	}
	defer func() { node.Close(err) }()
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
	cs := node.Client
	if err := prepareNamespace(ctx, node, slices.Max(append(slices.Clone(cfg.rounds), memoryPods, cfg.probe))); err != nil {
		return err
	}
	ctr, err := newCtrBench(ctx, node.Server)
	if err != nil {
		return err
	}
	defer ctr.close()
	b := &bench{cs: cs, ctr: ctr}

	// A first pod takes paths no later one does (first sandbox, first use
	// of the image's snapshot): run it, and report it apart.
	fmt.Printf("\nwarm-up: 1 pod ...\n")
	warm, err := b.round(ctx, "warmup", 1, false)
	if err != nil {
		return err
	}
	fmt.Printf("warm-up pod: create -> Running %s, -> Ready %s (watch)\n", fmtDur(warm.watchRunning[0]), fmtDur(warm.watchReady[0]))

	// Rounds larger than the memory phase's run last: on a small machine
	// they can overload the server, and the other figures should be in by
	// then.
	var small, large []int
	for _, n := range cfg.rounds {
		if n > memoryPods {
			large = append(large, n)
		} else {
			small = append(small, n)
		}
	}
	var (
		results    []*roundResult
		ctrResults []ctrResult
		mem        *memReport
	)
	// Whatever was measured is printed, also when a later step fails.
	defer func() {
		if len(results) > 0 || len(ctrResults) > 0 {
			printStartup(results, ctrResults)
		}
		if mem != nil {
			printMemory(mem, cfg.idle)
		}
		fmt.Printf("load average now: %s\n\n", benchenv.LoadAverage())
	}()
	podRound := func(label string, n int, probe bool) error {
		what := ""
		if probe {
			what = " with an exec readiness probe"
		}
		fmt.Printf("round: %d pod(s) at once%s ...\n", n, what)
		r, err := b.round(ctx, label, n, probe)
		if err != nil {
			return node.CheckRunning(fmt.Errorf("round of %d pods%s: %w", n, what, err))
		}
		results = append(results, r)
		return nil
	}
	// The reference first, while the node is quiet: after a pod round the
	// kubelet and containerd go on removing sandboxes for a while.
	for _, n := range cfg.ctrRuns {
		fmt.Printf("containerd reference: %d container(s) at once ...\n", n)
		r, err := ctr.round(ctx, n)
		if err != nil {
			return err
		}
		ctrResults = append(ctrResults, r)
	}
	for i, n := range small {
		if err := podRound(fmt.Sprintf("s%d", i), n, false); err != nil {
			return err
		}
	}
	if cfg.probe > 0 {
		if err := podRound("probe", cfg.probe, true); err != nil {
			return err
		}
	}

	// Memory with pods running and idle.
	fmt.Printf("memory: starting %d pods, then idling %s ...\n", memoryPods, cfg.idle)
	if _, err := b.start(ctx, "memory", memoryPods, false); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(cfg.idle):
	}
	if mem, err = measureMemory(node.Server, node.Bin); err != nil {
		return err
	}
	if len(large) > 0 {
		if err := b.teardown(ctx, "memory"); err != nil {
			return err
		}
	}

	for i, n := range large {
		if err := podRound(fmt.Sprintf("l%d", i), n, false); err != nil {
			return err
		}
	}
	return nil
}

// prepareNamespace checks the node can hold the largest round and creates
// the bench namespace.
func prepareNamespace(ctx context.Context, node *benchenv.Node, most int) error {
	n, err := node.Client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	pods, err := node.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node.Name})
	if err != nil {
		return err
	}
	capacity := n.Status.Allocatable.Pods().Value()
	fmt.Printf("node %s: allocatable pods %d, pods already there %d\n", node.Name, capacity, len(pods.Items))
	if int64(most+len(pods.Items)) > capacity {
		return fmt.Errorf("node %s holds %d pods (%d already there): cannot run %d at once", node.Name, capacity, len(pods.Items), most)
	}
	return node.CreateNamespace(ctx, namespace)
}

type bench struct {
	cs  kubernetes.Interface
	ctr *ctrBench
}

// roundResult holds one round's per-pod figures, in creation order.
type roundResult struct {
	label string
	n     int
	probe bool
	// From the pods' status timestamps (1 s resolution): creationTimestamp
	// to the container's startedAt, and to the Ready condition's
	// lastTransitionTime.
	statusRunning, statusReady []time.Duration
	// Client-observed: from just before the create call to the watch event
	// that first shows the container running, and the pod Ready.
	watchRunning, watchReady []time.Duration
	all                      time.Duration // first create call to last pod Ready (watch)
	load                     string        // 1-minute load average when the round began
}

// podTimes is what the watch saw of one pod.
type podTimes struct {
	created, running, ready time.Time
}

// round creates n pods at once, waits until all are Ready, reads their
// figures, then deletes them and waits until they are gone.
func (b *bench) round(ctx context.Context, label string, n int, probe bool) (*roundResult, error) {
	r, err := b.start(ctx, label, n, probe)
	if err != nil {
		return nil, err
	}
	return r, b.teardown(ctx, label)
}

// start creates n pods at once and waits until all are Ready; the pods
// stay.
func (b *bench) start(ctx context.Context, label string, n int, probe bool) (*roundResult, error) {
	load := strings.Fields(benchenv.LoadAverage())[0]
	pods := b.cs.CoreV1().Pods(namespace)
	selector := roundLabel + "=" + label
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var (
		mu    sync.Mutex
		times = map[string]*podTimes{}
		done  = make(chan struct{})
	)
	for i := range n {
		times[podName(label, i)] = &podTimes{}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- benchenv.WatchPods(wctx, b.cs, namespace, selector, list.ResourceVersion, func(p *corev1.Pod, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			t := times[p.Name]
			if t == nil {
				return
			}
			if t.running.IsZero() && containerRunning(p) {
				t.running = at
			}
			if t.ready.IsZero() && podReady(p) {
				t.ready = at
				for _, t := range times {
					if t.ready.IsZero() {
						return
					}
				}
				close(done)
			}
		})
	}()

	// Create all at once.
	createErrs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := podName(label, i)
			now := time.Now()
			mu.Lock()
			times[name].created = now
			mu.Unlock()
			if _, err := pods.Create(ctx, benchPod(name, label, probe), metav1.CreateOptions{}); err != nil {
				createErrs <- fmt.Errorf("create %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	close(createErrs)
	if err := <-createErrs; err != nil {
		return nil, err
	}

	timeout := 2*time.Minute + time.Duration(n)*2*time.Second
	// progress says how far the round got, for a round that fails.
	progress := func() string {
		mu.Lock()
		defer mu.Unlock()
		var first time.Time
		running, ready := 0, 0
		for _, t := range times {
			if first.IsZero() || t.created.Before(first) {
				first = t.created
			}
			if !t.running.IsZero() {
				running++
			}
			if !t.ready.IsZero() {
				ready++
			}
		}
		return fmt.Sprintf("%d of %d pods seen Running and %d Ready %.1f s after the first create", running, n, ready, time.Since(first).Seconds())
	}
	select {
	case <-done:
	case err := <-watchErr:
		return nil, fmt.Errorf("%s; then the watch failed: %v", progress(), err)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s; interrupted: %w", progress(), ctx.Err())
	case <-time.After(timeout):
		return nil, fmt.Errorf("not all Ready after %s: %s", timeout, progress())
	}
	cancel()

	final, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	byName := map[string]*corev1.Pod{}
	for i := range final.Items {
		byName[final.Items[i].Name] = &final.Items[i]
	}
	r := &roundResult{label: label, n: n, probe: probe, load: load}
	mu.Lock()
	defer mu.Unlock()
	var first, last time.Time
	for i := range n {
		name := podName(label, i)
		t, p := times[name], byName[name]
		if p == nil {
			return nil, fmt.Errorf("pod %s vanished", name)
		}
		startedAt, readyAt, err := statusTimes(p)
		if err != nil {
			return nil, fmt.Errorf("pod %s: %w", name, err)
		}
		created := p.CreationTimestamp.Time
		r.statusRunning = append(r.statusRunning, startedAt.Sub(created))
		r.statusReady = append(r.statusReady, readyAt.Sub(created))
		if t.running.IsZero() { // Ready implies running; a coalesced event
			t.running = t.ready
		}
		r.watchRunning = append(r.watchRunning, t.running.Sub(t.created))
		r.watchReady = append(r.watchReady, t.ready.Sub(t.created))
		if first.IsZero() || t.created.Before(first) {
			first = t.created
		}
		if t.ready.After(last) {
			last = t.ready
		}
	}
	r.all = last.Sub(first)
	return r, nil
}

func podName(label string, i int) string { return fmt.Sprintf("bench-%s-%03d", label, i) }

func benchPod(name, label string, probe bool) *corev1.Pod {
	zero := int64(0)
	c := corev1.Container{
		Name:            "main",
		Image:           benchImage,
		ImagePullPolicy: corev1.PullNever,
		Command:         sleeper,
	}
	if probe {
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}},
			PeriodSeconds: 1,
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{roundLabel: label}},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{c},
			TerminationGracePeriodSeconds: &zero,
		},
	}
}

func containerRunning(p *corev1.Pod) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Running != nil {
			return true
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// statusTimes returns the container's startedAt and the Ready condition's
// lastTransitionTime.
func statusTimes(p *corev1.Pod) (started, ready time.Time, err error) {
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Running != nil {
			started = s.State.Running.StartedAt.Time
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = c.LastTransitionTime.Time
		}
	}
	if started.IsZero() || ready.IsZero() {
		return started, ready, errors.New("no running container or Ready condition in its status")
	}
	return started, ready, nil
}

// teardown deletes a round's pods, waits until the API has none left, no
// container task of them runs in containerd and the kubelet has removed
// their containers, then lets the node settle.
func (b *bench) teardown(ctx context.Context, label string) error {
	began := time.Now()
	defer func() {
		fmt.Printf("  pods deleted and their containers removed in %.1f s\n", time.Since(began).Seconds())
	}()
	pods := b.cs.CoreV1().Pods(namespace)
	selector := roundLabel + "=" + label
	grace := int64(0)
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{LabelSelector: selector}); err != nil {
		return fmt.Errorf("delete round %s: %w", label, err)
	}
	deadline := time.Now().Add(deleteWait)
	for {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("round %s: %d pods still there %s after deleting them", label, len(list.Items), deleteWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	// With grace period 0 the API forgets the pods at once; the kubelet
	// stops their containers after. Wait for that too.
	if err := b.ctr.waitNoTasks(ctx, deleteWait); err != nil {
		return fmt.Errorf("round %s: %w", label, err)
	}
	// Then the kubelet removes the stopped containers and sandboxes (CNI
	// DEL, snapshots); let that finish too, or it runs into the next round.
	if err := b.ctr.waitNoContainers(ctx, cleanupWait); err != nil {
		fmt.Printf("  (%v; going on)\n", err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settleAfter):
	}
	return nil
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func printStartup(results []*roundResult, ctr []ctrResult) {
	fmt.Printf("\npod startup with the image present (p50 / p99 in seconds; nearest rank, so p99 of <= 100 pods is the slowest)\n")
	fmt.Printf("  status = pod status timestamps, creationTimestamp -> container startedAt / Ready lastTransitionTime: 1 s resolution, truncated\n")
	fmt.Printf("  watch  = this client, create call -> first watch event showing the container running / the pod Ready\n\n")
	fmt.Printf("%-22s %5s  %-17s %-17s %-17s %-17s %9s  %s\n", "round", "pods", "Running (status)", "Ready (status)", "Running (watch)", "Ready (watch)", "all Ready", "load before")
	pair := func(ds []time.Duration, prec int) string {
		return fmt.Sprintf("%.*f / %.*f", prec, benchenv.Percentile(ds, 50).Seconds(), prec, benchenv.Percentile(ds, 99).Seconds())
	}
	results = slices.Clone(results)
	slices.SortStableFunc(results, func(a, b *roundResult) int {
		if a.probe != b.probe {
			if a.probe {
				return 1
			}
			return -1
		}
		return a.n - b.n
	})
	for _, r := range results {
		name := fmt.Sprintf("%d at once", r.n)
		if r.probe {
			name += ", exec probe"
		}
		fmt.Printf("%-22s %5d  %-17s %-17s %-17s %-17s %7.2f s  %s\n", name, r.n,
			pair(r.statusRunning, 0), pair(r.statusReady, 0), pair(r.watchRunning, 3), pair(r.watchReady, 3), r.all.Seconds(), r.load)
	}

	if len(ctr) > 0 {
		fmt.Printf("\ncontainerd reference (same image and command, client: new container + snapshot + task create + start; no pod sandbox, no CNI, no kubelet)\n")
		fmt.Printf("%-22s %5s  %-17s %s\n", "round", "ctrs", "p50 / p99", "pod/ctr (watch Running, p50 / p99)")
		for _, c := range ctr {
			ratio := "-"
			for _, r := range results {
				if r.n == c.n && !r.probe {
					ratio = fmt.Sprintf("%.1f x / %.1f x", benchenv.Percentile(r.watchRunning, 50).Seconds()/benchenv.Percentile(c.start, 50).Seconds(),
						benchenv.Percentile(r.watchRunning, 99).Seconds()/benchenv.Percentile(c.start, 99).Seconds())
				}
			}
			fmt.Printf("%-22s %5d  %-17s %s\n", fmt.Sprintf("%d at once", c.n), c.n, pair(c.start, 3), ratio)
		}
	}

	fmt.Println()
	for _, r := range results {
		if r.probe {
			continue
		}
		p50, p99 := benchenv.Percentile(r.watchReady, 50), benchenv.Percentile(r.watchReady, 99)
		fmt.Printf("pod startup, %3d pod(s) at once, create -> Ready (watch): p50 %.2f s (target <= %.0f s: %s), p99 %.2f s (target <= %.0f s: %s)\n",
			r.n, p50.Seconds(), p50Target.Seconds(), benchenv.Verdict(p50 <= p50Target), p99.Seconds(), p99Target.Seconds(), benchenv.Verdict(p99 <= p99Target))
	}
}
