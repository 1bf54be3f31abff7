package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/testenv"
)

// vmMemory is one launcher pod's memory, in MiB.
type vmMemory struct {
	name  string
	procs map[string]float64 // PSS per process name (pause, strata-launcher, qemu-system-x86_64)
	pss   float64            // all the pod's processes
	// In QEMU's smaps: the guest RAM mapping and TCG's translation buffer
	// (PSS), and the guest RAM mapping's size.
	guestRAM, tcg, guestSize float64
	shim                     float64 // PSS of the pod's shim, outside the pod's cgroup
	workingSet               float64 // the pod cgroup's usage - inactive file; -1 unknown
	requestMiB, limitMiB     float64 // the launcher pod's memory request and limit
	cpuRequestMilli          int64
}

// overhead is what the VM costs beyond the guest pages it has touched.
func (m vmMemory) overhead() float64 { return m.pss - m.guestRAM }

type memReport struct {
	vms []vmMemory
	// The node: allocatable memory (MiB), CPU (milli) and pods; the host's
	// MemTotal and MemAvailable (MiB) with the VMs running.
	allocatableMiB, allocatableCPU, allocatablePods int64
	memTotal, memAvailable                          float64
}

// measureMemory reads the memory of the named VMs' launcher pods and of
// the node.
func (b *bench) measureMemory(ctx context.Context, names []string) (*memReport, error) {
	cs := b.node.Client
	n, err := cs.CoreV1().Nodes().Get(ctx, b.node.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	rep := &memReport{
		allocatableMiB:  n.Status.Allocatable.Memory().Value() >> 20,
		allocatableCPU:  n.Status.Allocatable.Cpu().MilliValue(),
		allocatablePods: n.Status.Allocatable.Pods().Value(),
	}
	nodeProcs := testenv.NodeProcesses(b.node.DataDir())
	for _, name := range names {
		p, err := cs.CoreV1().Pods(namespace).Get(ctx, launcherPodName(name), metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		m, err := podMemory(p, nodeProcs, b.cfg.memoryMiB)
		if err != nil {
			return nil, fmt.Errorf("VM %s: %w", name, err)
		}
		m.name = name
		rep.vms = append(rep.vms, m)
	}
	total, err1 := benchenv.ProcKB("/proc/meminfo", "MemTotal:")
	avail, err2 := benchenv.ProcKB("/proc/meminfo", "MemAvailable:")
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("/proc/meminfo: %v %v", err1, err2)
	}
	rep.memTotal, rep.memAvailable = total/1024, avail/1024
	return rep, nil
}

// podMemory sums the memory of the processes in pod p's cgroup, found
// among the node's processes by the pod UID in /proc/PID/cgroup.
func podMemory(p *corev1.Pod, nodeProcs []int, guestMiB int64) (vmMemory, error) {
	m := vmMemory{procs: map[string]float64{}, workingSet: -1}
	for _, c := range p.Spec.Containers {
		if c.Name == launcherContainer {
			m.requestMiB = float64(c.Resources.Requests.Memory().Value()) / (1 << 20)
			m.limitMiB = float64(c.Resources.Limits.Memory().Value()) / (1 << 20)
			m.cpuRequestMilli = c.Resources.Requests.Cpu().MilliValue()
		}
	}
	uid := string(p.UID)
	inPod := map[int]bool{}
	var cgroupDir string
	for _, pid := range nodeProcs {
		if dir, ok := podCgroup(pid, uid); ok {
			inPod[pid] = true
			cgroupDir = dir
		}
	}
	if len(inPod) == 0 {
		return m, fmt.Errorf("no process in the cgroup of pod %s (uid %s)", p.Name, uid)
	}
	shims := map[int]bool{}
	for pid := range inPod {
		_, pss, err := benchenv.ProcMemory(pid)
		if err != nil {
			continue // a short-lived helper that is gone
		}
		name := procName(pid)
		m.procs[name] += pss
		m.pss += pss
		if strings.HasPrefix(name, "qemu-system") {
			maps, err := readSmaps(pid)
			if err != nil {
				return m, err
			}
			ram := guestRAMMapping(maps, guestMiB*1024)
			if ram == nil {
				return m, fmt.Errorf("QEMU %d: no anonymous mapping of the guest's %d MiB in /proc/%d/smaps", pid, guestMiB, pid)
			}
			m.guestRAM, m.guestSize = ram.pss/1024, ram.sizeKB/1024
			for _, mp := range maps {
				if mp.path == "" && strings.Contains(mp.perms, "w") && strings.Contains(mp.perms, "x") {
					m.tcg += mp.pss / 1024
				}
			}
		}
		if ppid, ok := testenv.ParentPID(pid); ok && !inPod[ppid] {
			shims[ppid] = true
		}
	}
	for pid := range shims {
		if _, pss, err := benchenv.ProcMemory(pid); err == nil {
			m.shim += pss
		}
	}
	if cgroupDir != "" {
		m.workingSet = cgroupWorkingSet(cgroupDir)
	}
	return m, nil
}

// podCgroup reports whether pid is in the cgroup of the pod with uid, and
// the pod cgroup's memory controller directory (cgroup v1 or v2).
func podCgroup(pid int, uid string) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", false
	}
	// The cgroupfs driver names the pod's cgroup pod<uid>, the systemd
	// driver ...-pod<uid with _ for ->.slice.
	keys := []string{"pod" + uid, "pod" + strings.ReplaceAll(uid, "-", "_")}
	found, dir := false, ""
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, k := range keys {
			i := strings.Index(parts[2], k)
			if i < 0 {
				continue
			}
			found = true
			// The pod's directory: up to the end of the path element.
			end := i + strings.IndexByte(parts[2][i:]+"/", '/')
			switch {
			case slices.Contains(strings.Split(parts[1], ","), "memory"):
				dir = filepath.Join("/sys/fs/cgroup/memory", parts[2][:end])
			case parts[1] == "" && dir == "":
				dir = filepath.Join("/sys/fs/cgroup", parts[2][:end])
			}
		}
	}
	return dir, found
}

// cgroupWorkingSet is a memory cgroup's usage minus its inactive file
// pages (what the kubelet calls the working set), in MiB; -1 unknown.
func cgroupWorkingSet(dir string) float64 {
	usage, inactive := -1.0, 0.0
	for _, f := range []string{"memory.usage_in_bytes", "memory.current"} {
		if data, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			if v, err := strconv.ParseFloat(strings.TrimSpace(string(data)), 64); err == nil {
				usage = v
			}
		}
	}
	if usage < 0 {
		return -1
	}
	if data, err := os.ReadFile(filepath.Join(dir, "memory.stat")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && (f[0] == "total_inactive_file" || f[0] == "inactive_file") {
				inactive, _ = strconv.ParseFloat(f[1], 64)
			}
		}
	}
	return (usage - inactive) / (1 << 20)
}

// mapping is one entry of /proc/PID/smaps.
type mapping struct {
	perms, path      string
	sizeKB, rss, pss float64 // kB
}

func readSmaps(pid int) ([]mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a mapping's header: range perms offset dev inode [path]
			m := mapping{}
			if len(fields) >= 2 {
				m.perms = fields[1]
			}
			if len(fields) >= 6 {
				m.path = strings.Join(fields[5:], " ")
			}
			out = append(out, m)
			continue
		}
		if len(out) == 0 || len(fields) < 3 || fields[2] != "kB" {
			continue
		}
		v, _ := strconv.ParseFloat(fields[1], 64)
		switch last := &out[len(out)-1]; fields[0] {
		case "Size:":
			last.sizeKB = v
		case "Rss:":
			last.rss = v
		case "Pss:":
			last.pss = v
		}
	}
	return out, sc.Err()
}

// guestRAMMapping is QEMU's mapping of the guest's RAM: anonymous,
// readable and writable, as large as the guest's memory (QEMU maps it
// alone, with a guard page after it); the smallest such mapping at least
// that large when none is exactly.
func guestRAMMapping(maps []mapping, guestKB int64) *mapping {
	var best *mapping
	for i := range maps {
		m := &maps[i]
		if m.path != "" || !strings.HasPrefix(m.perms, "rw") || strings.Contains(m.perms, "x") || m.sizeKB < float64(guestKB) {
			continue
		}
		if best == nil || m.sizeKB < best.sizeKB {
			best = m
		}
	}
	return best
}

// procName is the base name of pid's executable (its comm when that
// cannot be read).
func procName(pid int) string {
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		return filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	}
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(data))
}
