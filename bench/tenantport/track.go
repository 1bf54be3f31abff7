package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/bench/benchenv"
	tenantnet "github.com/strata-cloud/strata/internal/network/tenant"
)

// sample is what was seen of one target, in this client's clock except
// probing and up (the prober's log lines, kubelet timestamps: the same
// host's clock).
type sample struct {
	kind       kind
	name, load string
	created    time.Time // just before the first create call (the Port's, or the plain pod's)
	allocated  time.Time // the Port's status.fixedIPs (watch)
	scheduled  time.Time // the pod's spec.nodeName (watch)
	running    time.Time // the pod's container running (watch)
	ipAPI      time.Time // the pod's status.podIP (watch)
	active     time.Time // the Port's status.status ACTIVE (watch)
	probing    time.Time // the prober has the target's IP
	up         time.Time // the first answer to the prober
	ip, podIP  string
	gaveUp     bool // the prober stopped trying
	timedOut   bool // the bench stopped waiting
}

// tracker gathers the watches' and probers' observations.
type tracker struct {
	mu          sync.Mutex
	byName      map[string]*sample
	proberReady map[kind]bool
	arp         map[kind]string
	// tenantDir is where a Port's address goes for the tenant prober.
	tenantDir string
}

func newTracker(tenantDir string) *tracker {
	return &tracker{byName: map[string]*sample{}, proberReady: map[kind]bool{}, arp: map[kind]string{}, tenantDir: tenantDir}
}

// add registers a target about to be created; its clock starts now.
func (t *tracker) add(k kind, name, load string) *sample {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &sample{kind: k, name: name, load: load}
	t.byName[name] = s
	s.created = time.Now()
	return s
}

// complete says whether s needs no more waiting: it answered (and, a
// tenant pod, its Port is ACTIVE and its container seen running), or the
// prober gave up.
func (t *tracker) complete(s *sample) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.gaveUp {
		return true
	}
	if s.up.IsZero() || s.running.IsZero() {
		return false
	}
	if s.kind == tenant {
		return !s.active.IsZero() && !s.allocated.IsZero()
	}
	return !s.ipAPI.IsZero()
}

// snapshot copies samples as they are now.
func (t *tracker) snapshot(samples []*sample) []*sample {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*sample, len(samples))
	for i, s := range samples {
		c := *s
		out[i] = &c
	}
	return out
}

func (t *tracker) timeOut(s *sample) {
	t.mu.Lock()
	s.timedOut = true
	t.mu.Unlock()
}

// line is one target's figures, for the progress output.
func (t *tracker) line(s *sample) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := func(at time.Time) string {
		if at.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.3f", at.Sub(s.created).Seconds())
	}
	status := ""
	if s.gaveUp || s.timedOut {
		status = "  NOT REACHED"
	}
	if s.kind == tenant {
		return fmt.Sprintf("%-8s port %-11s allocated %s  scheduled %s  running %s  ACTIVE %s  prober has IP %s  answers %s  (s; load %s)%s",
			s.name, s.ip, f(s.allocated), f(s.scheduled), f(s.running), f(s.active), f(s.probing), f(s.up), s.load, status)
	}
	return fmt.Sprintf("%-8s pod  %-11s scheduled %s  running %s  podIP in API %s  prober has IP %s  answers %s  (s; load %s)%s",
		s.name, s.podIP, f(s.scheduled), f(s.running), f(s.ipAPI), f(s.probing), f(s.up), s.load, status)
}

func first(t *time.Time, at time.Time) {
	if t.IsZero() {
		*t = at
	}
}

// onPort records a Port event and, once its address is allocated, hands
// the address to the tenant prober.
func (t *tracker) onPort(p *netv1.Port, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byName[p.Name]
	if s == nil || s.kind != tenant {
		return
	}
	if s.allocated.IsZero() && len(p.Status.FixedIPs) > 0 && p.Status.FixedIPs[0].IPAddress != "" {
		s.allocated, s.ip = at, p.Status.FixedIPs[0].IPAddress
		if err := writeTarget(t.tenantDir, s.name, s.ip); err != nil {
			fmt.Fprintf(os.Stderr, "target %s: %v\n", s.name, err)
		}
	}
	if p.Status.Status == netv1.StatusActive {
		first(&s.active, at)
	}
}

// writeTarget writes a target file for a prober: written, then renamed.
func writeTarget(dir, name, ip string) error {
	tmp := filepath.Join(dir, "."+name)
	if err := os.WriteFile(tmp, []byte(ip+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

func (t *tracker) onPod(p *corev1.Pod, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byName[p.Name]
	if s == nil {
		return
	}
	if p.Spec.NodeName != "" {
		first(&s.scheduled, at)
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running != nil {
			first(&s.running, at)
		}
	}
	if p.Status.PodIP != "" && s.ipAPI.IsZero() {
		s.ipAPI, s.podIP = at, p.Status.PodIP
	}
}

// onProberLine records a line of prober k's log.
func (t *tracker) onProberLine(k kind, at time.Time, text string) {
	f := strings.Fields(text)
	if len(f) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch f[0] {
	case "PROBER-READY":
		t.proberReady[k] = true
	case "ARP-RETRANS":
		t.arp[k] = strings.Join(f[1:], " ")
	case "START", "UP", "GAVEUP":
		if len(f) < 2 {
			return
		}
		s := t.byName[f[1]]
		if s == nil || s.kind != k {
			return
		}
		switch f[0] {
		case "START":
			first(&s.probing, at)
		case "UP":
			first(&s.up, at)
		case "GAVEUP":
			s.gaveUp = true
		}
	}
}

// watchPorts feeds the namespace's Port events to the tracker until ctx
// ends, re-opening the watch when the server closes it.
func (b *bench) watchPorts(ctx context.Context) error {
	ports := b.dyn.Resource(portsGVR).Namespace(namespace)
	list, err := ports.List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	rv := list.GetResourceVersion()
	for {
		w, err := ports.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for ev := range w.ResultChan() {
			at := time.Now()
			switch ev.Type {
			case watch.Error:
				w.Stop()
				return fmt.Errorf("port watch: %v", apierrors.FromObject(ev.Object))
			case watch.Added, watch.Modified, watch.Bookmark:
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				rv = u.GetResourceVersion()
				if ev.Type == watch.Bookmark {
					continue
				}
				var p netv1.Port
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
					continue
				}
				b.tr.onPort(&p, at)
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return nil
		}
	}
}

func (b *bench) watchPods(ctx context.Context) error {
	list, err := b.node.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	return benchenv.WatchPods(ctx, b.node.Client, namespace, "", list.ResourceVersion, b.tr.onPod)
}

// The probers' names.
const (
	tenantProber = "prober-net1"
	podProber    = "prober-podnet"
)

func proberName(k kind) string {
	if k == tenant {
		return tenantProber
	}
	return podProber
}

// proberScript reads target files NAME (holding an IP) from /targets and,
// for each new one, starts a fetch of http://IP/ every 100 ms (each
// bounded by `timeout 1`: busybox's own wget -T crashes) until one
// succeeds, logging START, then UP or, after limit tries, GAVEUP. A lower
// ARP retransmit time keeps the probes of an address that has no owner
// yet from waiting up to 1 s for the next ARP request once it has one.
func proberScript(arpRetransMS, limit int) string {
	return fmt.Sprintf(`r=%d
if [ "$r" -gt 0 ]; then
  if echo $r > /proc/sys/net/ipv4/neigh/eth0/retrans_time_ms; then echo "ARP-RETRANS $r ms"; else echo "ARP-RETRANS unchanged (not writable)"; fi
fi
mkdir -p /tmp/p
echo PROBER-READY
while :; do
  for f in /targets/*; do
    [ -f "$f" ] || continue
    n=${f##*/}
    mkdir /tmp/p/$n 2>/dev/null || continue
    ip=$(cat "$f")
    echo "START $n $ip"
    ( i=0
      while [ ! -d /tmp/p/$n/up ] && [ $i -lt %d ]; do
        ( timeout 1 wget -qO- "http://$ip/" >/dev/null 2>&1 && mkdir /tmp/p/$n/up 2>/dev/null && echo "UP $n $ip" ) &
        sleep 0.1
        i=$((i+1))
      done
      [ -d /tmp/p/$n/up ] || echo "GAVEUP $n $ip" ) &
  done
  sleep 0.1
done
`, arpRetransMS, limit)
}

func proberPod(k kind, targetDir string, arpRetransMS, limit int) *corev1.Pod {
	zero := int64(0)
	privileged := true // to set its own namespace's ARP retransmit time
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: proberName(k), Labels: map[string]string{benchLabel: "prober"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Volumes:                       []corev1.Volume{targetVolume(targetDir)},
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           benchImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"sh", "-c", proberScript(arpRetransMS, limit)},
				VolumeMounts:    []corev1.VolumeMount{{Name: "targets", MountPath: "/targets", ReadOnly: true}},
				SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
			}},
		},
	}
	if k == tenant {
		pod.Annotations = map[string]string{netv1.AnnotationNetwork: network}
	}
	return pod
}

// startProbers creates both probers, follows their logs and waits until
// both run their loop.
func (b *bench) startProbers(ctx context.Context) error {
	limit := int(b.cfg.timeout / (100 * time.Millisecond))
	for _, k := range []kind{tenant, podNet} {
		if _, err := b.node.Client.CoreV1().Pods(namespace).Create(ctx, proberPod(k, b.targetDir(k), b.cfg.arpRetrans, limit), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create prober %s: %w", proberName(k), err)
		}
		go b.followProber(ctx, k)
	}
	began := time.Now()
	for {
		b.tr.mu.Lock()
		ready := b.tr.proberReady[tenant] && b.tr.proberReady[podNet]
		arp := fmt.Sprintf("%s: %s; %s: %s", tenantProber, b.tr.arp[tenant], podProber, b.tr.arp[podNet])
		b.tr.mu.Unlock()
		if ready {
			fmt.Printf("probers running after %.1f s (ARP retransmit time: %s)\n", time.Since(began).Seconds(), arp)
			return nil
		}
		if time.Since(began) > 3*time.Minute {
			var state []string
			for _, k := range []kind{tenant, podNet} {
				p, err := b.node.Client.CoreV1().Pods(namespace).Get(ctx, proberName(k), metav1.GetOptions{})
				if err != nil {
					state = append(state, err.Error())
					continue
				}
				state = append(state, fmt.Sprintf("%s: phase %s %v", p.Name, p.Status.Phase, p.Status.ContainerStatuses))
			}
			return fmt.Errorf("probers not running after 3 minutes: %s", strings.Join(state, "; "))
		}
		if err := benchenv.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// followProber follows prober k's log (kubelet timestamps on) until ctx
// ends; until the container runs, GetLogs fails and it tries again. A
// re-opened stream starts from the beginning: the tracker keeps first
// sightings only.
func (b *bench) followProber(ctx context.Context, k kind) {
	pods := b.node.Client.CoreV1().Pods(namespace)
	for ctx.Err() == nil {
		stream, err := pods.GetLogs(proberName(k), &corev1.PodLogOptions{Follow: true, Timestamps: true}).Stream(ctx)
		if err != nil {
			benchenv.Sleep(ctx, 200*time.Millisecond)
			continue
		}
		sc := bufio.NewScanner(stream)
		for sc.Scan() {
			stamp, text, ok := strings.Cut(sc.Text(), " ")
			at, err := time.Parse(time.RFC3339Nano, stamp)
			if !ok || err != nil {
				continue
			}
			b.tr.onProberLine(k, at, text)
		}
		stream.Close()
		benchenv.Sleep(ctx, 200*time.Millisecond)
	}
}

// devicesLeft names net1's bridge and VXLAN device where they still exist
// on this host.
func devicesLeft(vni int32) []string {
	var left []string
	for _, name := range []string{tenantnet.BridgeName(vni), tenantnet.VXLANName(vni)} {
		if _, err := netlink.LinkByName(name); err == nil {
			left = append(left, name)
		}
	}
	return left
}

// removeLeftoverDevices deletes net1's devices if the agent stopped before
// it removed them (this bench holds the host's node agent lock: they are
// its own).
func removeLeftoverDevices(vni int32) {
	if vni == 0 {
		return
	}
	for _, name := range devicesLeft(vni) {
		l, err := netlink.LinkByName(name)
		if err != nil {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: delete %s: %v\n", name, err)
		} else {
			fmt.Printf("cleanup: deleted %s (VNI %s), left by the agent\n", name, strconv.Itoa(int(vni)))
		}
	}
}
